//go:build cgo

package main

import "sync"

// table maps the handles C holds to connections. C may keep no Go pointer
// (cgo's pointer rules), so it keeps a number, and every call looks the
// number up here.
type table struct {
	mu    sync.Mutex
	conns map[int64]*conn
	last  int64 // the last handle issued; handles are never reused
}

// handles is the process's one table: the exported functions are plain C
// functions, with nowhere else to keep it.
var handles = table{conns: make(map[int64]*conn)}

// add stores cn and returns its new handle, which is positive.
func (t *table) add(cn *conn) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.last++
	t.conns[t.last] = cn
	return t.last
}

// get returns the connection of handle h, or nil if h is not open.
func (t *table) get(h int64) *conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.conns[h]
}

// remove takes handle h out of the table and returns its connection, or
// nil if h is not open. Once it returns, no new call can find the
// connection; calls that found it before go on with it until it closes.
func (t *table) remove(h int64) *conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	cn := t.conns[h]
	delete(t.conns, h)
	return cn
}
