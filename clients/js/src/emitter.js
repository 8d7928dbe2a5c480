// A small event emitter with the part of Node's EventEmitter API that the
// client uses, for browsers, where node:events is not there.

export class Emitter {
  #listeners = new Map();

  on(event, fn) {
    if (typeof fn !== 'function') throw new TypeError('listener must be a function');
    this.emit('newListener', event, fn);
    const list = this.#listeners.get(event);
    if (list) list.push(fn);
    else this.#listeners.set(event, [fn]);
    return this;
  }

  addListener(event, fn) {
    return this.on(event, fn);
  }

  once(event, fn) {
    const wrapper = (...args) => {
      this.off(event, wrapper);
      fn.apply(this, args);
    };
    wrapper.listener = fn;
    return this.on(event, wrapper);
  }

  off(event, fn) {
    const list = this.#listeners.get(event);
    if (!list) return this;
    const i = list.findIndex((l) => l === fn || l.listener === fn);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.#listeners.delete(event);
    return this;
  }

  removeListener(event, fn) {
    return this.off(event, fn);
  }

  removeAllListeners(event) {
    if (event === undefined) this.#listeners.clear();
    else this.#listeners.delete(event);
    return this;
  }

  emit(event, ...args) {
    const list = this.#listeners.get(event);
    if (!list) return false;
    for (const fn of [...list]) fn.apply(this, args);
    return true;
  }

  listenerCount(event) {
    const list = this.#listeners.get(event);
    return list ? list.length : 0;
  }
}
