// Package apperr is the one error model of the platform: a handful of kinds that domain code
// returns and the HTTP layer maps to statuses in one place. Library errors are translated into
// these kinds in the adapters; anything unrecognised is internal and never shown to a caller.
package apperr

import (
	"errors"
	"fmt"
	"strings"
)

// Kind is the category of an error; the HTTP layer maps each kind to one status.
type Kind string

// The kinds of error. Every error a caller sees has one of them.
const (
	Invalid         Kind = "invalid"           // 400: malformed input, bad fields
	Unprocessable   Kind = "unprocessable"     // 422: well-formed input whose values conflict with state
	Unauthorized    Kind = "unauthorized"      // 401: no or bad credentials
	Forbidden       Kind = "forbidden"         // 403: authenticated but missing a permission
	Suspended       Kind = "suspended"         // 403: the caller's scope lies in a suspended subtree
	NotFound        Kind = "not_found"         // 404: absent or outside the caller's subtree
	Conflict        Kind = "conflict"          // 409: uniqueness, children, concurrent change
	TooLarge        Kind = "too_large"         // 413: body over the limit
	TooManyRequests Kind = "too_many_requests" // 429: throttled
	Internal        Kind = "internal"          // 500: anything else; details only in logs
)

// FieldError names one bad field of an input. Field is a JSON path such as "parent.id" or
// "tiers[1].upTo"; Code is a machine code such as "required" or "unknown_field".
type FieldError struct {
	Field   string `json:"field"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error is an application error. Code is the machine code shown to callers (for example
// "billing_id_taken"); it defaults to the kind. Err, when set, is an underlying cause for logs.
type Error struct {
	Kind    Kind
	Code    string
	Message string
	Fields  []FieldError
	Err     error
}

// Error implements error. It includes the cause for logs; callers see only Code and Message.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(string(e.Kind))
	if e.Code != "" && e.Code != string(e.Kind) {
		b.WriteString("/" + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	for _, f := range e.Fields {
		fmt.Fprintf(&b, "; %s: %s", f.Field, f.Message)
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// New returns an error of the given kind with a machine code and a human message.
func New(kind Kind, code, message string) *Error {
	if code == "" {
		code = string(kind)
	}
	return &Error{Kind: kind, Code: code, Message: message}
}

// Newf is New with a formatted message.
func Newf(kind Kind, code, format string, args ...any) *Error {
	return New(kind, code, fmt.Sprintf(format, args...))
}

// Wrap returns an internal error carrying cause for the logs.
func Wrap(cause error, context string) error {
	if cause == nil {
		return nil
	}
	var ae *Error
	if errors.As(cause, &ae) {
		return cause
	}
	return &Error{Kind: Internal, Code: string(Internal), Message: "Internal error.", Err: fmt.Errorf("%s: %w", context, cause)}
}

// As returns the *Error in err's chain, or an internal error wrapping err when there is none.
func As(err error) *Error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	return &Error{Kind: Internal, Code: string(Internal), Message: "Internal error.", Err: err}
}

// KindOf returns the kind of err, Internal for an unrecognised error, "" for nil.
func KindOf(err error) Kind {
	if err == nil {
		return ""
	}
	return As(err).Kind
}

// Is reports whether err is an application error of the given kind.
func Is(err error, kind Kind) bool { return err != nil && KindOf(err) == kind }

// NotFoundf returns a NotFound error. The message must not reveal whether the id exists elsewhere.
func NotFoundf(format string, args ...any) *Error {
	return Newf(NotFound, string(NotFound), format, args...)
}

// Fields collects field errors so that an input reports every problem at once.
// The zero value is ready to use.
type Fields struct{ list []FieldError }

// Add records a bad field.
func (f *Fields) Add(field, code, message string) {
	f.list = append(f.list, FieldError{Field: field, Code: code, Message: message})
}

// Required records field as missing when empty is true.
func (f *Fields) Required(field string, empty bool) {
	if empty {
		f.Add(field, "required", field+" is required")
	}
}

// Merge adds every field error of err (an *Error from Fields.Err) under the given path prefix.
// Any other non-nil error is recorded against the prefix itself.
func (f *Fields) Merge(prefix string, err error) {
	if err == nil {
		return
	}
	var ae *Error
	if errors.As(err, &ae) && len(ae.Fields) > 0 {
		for _, fe := range ae.Fields {
			name := fe.Field
			if prefix != "" {
				name = prefix + "." + fe.Field
			}
			f.list = append(f.list, FieldError{Field: name, Code: fe.Code, Message: fe.Message})
		}
		return
	}
	f.Add(prefix, "invalid", err.Error())
}

// Empty reports whether no field error was recorded.
func (f *Fields) Empty() bool { return len(f.list) == 0 }

// Err returns nil when no field was recorded, otherwise an Invalid error listing them all.
func (f *Fields) Err() error { return f.errOf(Invalid) }

// Unprocessable returns nil when no field was recorded, otherwise an Unprocessable error (422:
// the shape is right but the values conflict).
func (f *Fields) Unprocessable() error { return f.errOf(Unprocessable) }

func (f *Fields) errOf(kind Kind) error {
	if len(f.list) == 0 {
		return nil
	}
	return &Error{Kind: kind, Code: "validation_failed", Message: "The request has invalid fields.", Fields: append([]FieldError(nil), f.list...)}
}

// Field returns an Invalid error for a single field.
func Field(field, code, message string) error {
	var f Fields
	f.Add(field, code, message)
	return f.Err()
}
