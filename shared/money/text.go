package money

import (
	"encoding/json"
	"reflect"
)

// Text is a decimal as it arrived in a JSON body, a string ("10.5") or a number (10.5), kept
// verbatim so that validation can report a bad value against its field. Parse it with Decimal.
type Text string

// UnmarshalJSON accepts a JSON string or number without converting it. Any other JSON value is a
// type error, which encoding/json reports with the field's name.
func (t *Text) UnmarshalJSON(b []byte) error {
	switch {
	case len(b) == 0, string(b) == "null":
		return nil
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*t = Text(s)
		return nil
	case b[0] == '-' || (b[0] >= '0' && b[0] <= '9'):
		*t = Text(b)
		return nil
	}
	return &json.UnmarshalTypeError{Value: "non-number", Type: reflect.TypeFor[Text]()}
}

// Decimal parses the text. ErrInvalidDecimal when it is not a decimal.
func (t Text) Decimal() (Decimal, error) { return Parse(string(t)) }

// OpenAPISchema describes the accepted forms.
func (Text) OpenAPISchema() map[string]any {
	return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}}}
}

// OpenAPISchema describes a decimal carried as a string.
func (Decimal) OpenAPISchema() map[string]any {
	return map[string]any{"type": "string", "pattern": `^-?\d+(\.\d+)?$`}
}
