package runner

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
)

// Registry holds the handlers and the payload validators by task type. It is safe for
// concurrent use. Reads take no lock, since every submission validates against the
// registry and every run looks its handler up: a write copies the tables and swaps
// them in behind an atomic pointer, so a reader sees one consistent snapshot.
//
// The zero Registry is empty and ready to use; NewRegistry returns one holding the
// built-ins.
type Registry struct {
	tables    atomic.Pointer[tables]
	writeLock sync.Mutex // serializes writers; readers never take it
}

// tables is one snapshot of a Registry. It is never changed once published.
type tables struct {
	handlers   map[string]Handler
	validators map[string]func([]byte) error
}

var noTables = &tables{}

var typeName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.:/-]{0,127}$`)

// NewRegistry returns a registry with the built-in handlers noop, echo, sleep and sum,
// and the sleep payload validator.
func NewRegistry() *Registry {
	r := &Registry{}
	r.tables.Store(&tables{handlers: builtins(), validators: builtinValidators()})
	return r
}

func (r *Registry) load() *tables {
	if t := r.tables.Load(); t != nil {
		return t
	}
	return noTables
}

// Register adds h for tasks of type typ. Types are 1–128 characters of letters, digits
// and _ . : / -, starting with a letter or digit. A type can be registered once: a
// second registration returns an error wrapping ErrHandlerExists.
func (r *Registry) Register(typ string, h Handler) error {
	if !typeName.MatchString(typ) {
		return fmt.Errorf("runner: bad task type %q: use 1-128 letters, digits, _ . : / -", typ)
	}
	if h == nil {
		return errors.New("runner: nil handler")
	}
	r.writeLock.Lock()
	defer r.writeLock.Unlock()
	old := r.load()
	if _, ok := old.handlers[typ]; ok {
		return fmt.Errorf("%w: %q", ErrHandlerExists, typ)
	}
	handlers := maps.Clone(old.handlers)
	if handlers == nil {
		handlers = make(map[string]Handler, 1)
	}
	handlers[typ] = h
	r.tables.Store(&tables{handlers: handlers, validators: old.validators})
	return nil
}

// SetValidator sets the check a payload of type typ must pass at submission, replacing
// any earlier one; a nil v removes it. A type may have a validator without a handler
// here (a task that a peer runs).
func (r *Registry) SetValidator(typ string, v func(payload []byte) error) {
	r.writeLock.Lock()
	defer r.writeLock.Unlock()
	old := r.load()
	validators := maps.Clone(old.validators)
	if validators == nil {
		validators = make(map[string]func([]byte) error, 1)
	}
	if v == nil {
		delete(validators, typ)
	} else {
		validators[typ] = v
	}
	r.tables.Store(&tables{handlers: old.handlers, validators: validators})
}

// Lookup returns the handler for typ.
func (r *Registry) Lookup(typ string) (Handler, bool) {
	h, ok := r.load().handlers[typ]
	return h, ok
}

// Has reports whether typ has a handler.
func (r *Registry) Has(typ string) bool {
	_, ok := r.load().handlers[typ]
	return ok
}

// Validate checks a payload of type typ with the type's validator; nil when the type
// has none. The error is the validator's, for the caller to put in its answer.
func (r *Registry) Validate(typ string, payload []byte) error {
	if v := r.load().validators[typ]; v != nil {
		return v(payload)
	}
	return nil
}

// Types returns the types that have a handler, sorted.
func (r *Registry) Types() []string {
	return slices.Sorted(maps.Keys(r.load().handlers))
}
