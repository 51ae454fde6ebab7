package money

import (
	"bytes"
	"encoding/json"
	"errors"

	"github.com/cockroachdb/apd/v3"
)

// errNotFinite is returned when marshaling a value that overflowed the arithmetic range.
var errNotFinite = errors.New("money: cannot encode a non-finite decimal")

// MarshalJSON encodes x as a JSON string in plain notation ("121.44"), as SPEC 4 requires for
// amounts and quantities on output. It fails only for a value that overflowed (beyond 10^100000).
func (x Decimal) MarshalJSON() ([]byte, error) {
	if x.d.Form != apd.Finite {
		return nil, errNotFinite
	}
	b := make([]byte, 0, 24)
	b = append(b, '"')
	b = x.d.Append(b, 'f')
	return append(b, '"'), nil
}

// UnmarshalJSON accepts a JSON string ("1.5") or a JSON number (1.5) and reads it with Parse from
// its raw text, so a number never passes through float64. JSON null leaves x unchanged, as the
// encoding/json convention asks (use *Decimal to tell a missing value from zero). Any other JSON
// value, or text Parse rejects, gives an error wrapping ErrInvalidDecimal.
func (x *Decimal) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	text := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &text); err != nil {
			return invalid(string(b), "malformed JSON string")
		}
	}
	d, err := Parse(text)
	if err != nil {
		return err
	}
	*x = d
	return nil
}

// MarshalText encodes x in plain notation, for encoders that use encoding.TextMarshaler (map
// keys, CSV writers, query strings). It fails only for a value that overflowed.
func (x Decimal) MarshalText() ([]byte, error) {
	if x.d.Form != apd.Finite {
		return nil, errNotFinite
	}
	return x.d.Append(nil, 'f'), nil
}

// UnmarshalText reads text with Parse; on failure x is unchanged and the error wraps
// ErrInvalidDecimal.
func (x *Decimal) UnmarshalText(b []byte) error {
	d, err := Parse(string(b))
	if err != nil {
		return err
	}
	*x = d
	return nil
}
