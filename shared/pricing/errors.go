package pricing

import "errors"

// Codes carried by FieldError.Code.
const (
	// CodeRequired: the field is missing and the model needs it.
	CodeRequired = "required"
	// CodeInvalid: the field is present but its value breaks a rule (negative, out of order...).
	CodeInvalid = "invalid"
	// CodeNotAllowed: the field is present but the model does not use it.
	CodeNotAllowed = "not_allowed"
)

// FieldError is one problem with one input field. Field is a JSON path relative to the value
// validated ("tiers[1].upTo"), Code one of the Code constants, Message a sentence for a person.
// Validation functions return several of them joined with errors.Join; FieldErrors takes them
// apart again.
type FieldError struct {
	// Field is the JSON path of the offending field, e.g. "tiers[1].upTo".
	Field string `json:"field"`
	// Code is CodeRequired, CodeInvalid or CodeNotAllowed.
	Code string `json:"code"`
	// Message says what is wrong, for a person ("must not be negative").
	Message string `json:"message"`
}

// Error returns "field: message".
func (e *FieldError) Error() string {
	return e.Field + ": " + e.Message
}

// FieldErrors returns every *FieldError inside err, in order, looking through errors.Join and
// fmt.Errorf("%w") wrapping. It returns nil when err holds none.
func FieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(e error) {
		switch x := e.(type) {
		case nil:
			return
		case *FieldError:
			out = append(out, x)
		case interface{ Unwrap() []error }:
			for _, inner := range x.Unwrap() {
				walk(inner)
			}
		case interface{ Unwrap() error }:
			walk(x.Unwrap())
		}
	}
	walk(err)
	return out
}

// fieldErrors collects FieldErrors for a Validate method.
type fieldErrors []error

func (f *fieldErrors) add(field, code, message string) {
	*f = append(*f, &FieldError{Field: field, Code: code, Message: message})
}

func (f fieldErrors) err() error {
	return errors.Join(f...)
}
