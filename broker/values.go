package broker

// Key names a value of type T attached to streams (Stream.SetValue): a
// nickname, a subscription, a counter. Values belong to the stream, not
// to the actor handling it: they survive the actor's restarts, any actor
// holding the stream may read them, and they go once the application has
// handled the stream's Closed. Declare keys once, at package level:
//
//	var nick = broker.NewKey[string]("nick")
//
//	nick.Set(m.Stream, "ada")
//	name, ok := nick.Get(m.Stream)
//
// Two keys are the same key only if they are the same variable.
type Key[T any] struct{ k *keyName }

type keyName struct{ name string }

// NewKey returns a new key; name is for people reading code and logs.
func NewKey[T any](name string) Key[T] { return Key[T]{&keyName{name}} }

// Set attaches v to s under k.
func (k Key[T]) Set(s *Stream, v T) { s.SetValue(k.k, v) }

// Get is the value s holds under k, and whether it holds one.
func (k Key[T]) Get(s *Stream) (T, bool) {
	v, ok := s.Value(k.k).(T)
	return v, ok
}

// Delete removes the value s holds under k.
func (k Key[T]) Delete(s *Stream) { s.SetValue(k.k, nil) }

// String is the key's name.
func (k Key[T]) String() string { return k.k.name }
