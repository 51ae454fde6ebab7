package usage

import (
	"encoding/json"
	"unicode/utf8"

	"github.com/channelbilling/cms/shared/money"
)

// A fast path for the JSON the channels carry. encoding/json with DisallowUnknownFields costs
// about 10 µs per record (reflection, a decoder per record); the scanner below reads the usual
// record shape in well under 1 µs. It accepts a strict subset of what encoding/json accepts:
// exact field names, strings without escapes or control characters, and gives up (ok false) on
// anything else, which then goes through encoding/json for the same result or for an error
// message naming the field. FuzzDecodeRecord checks that whenever the fast path succeeds,
// encoding/json yields the same Input.

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// scanString reads a JSON string starting at b[i] == '"' without escapes; it returns the
// content and the index after the closing quote.
func scanString(b []byte, i int) (string, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return "", 0, false
	}
	start := i + 1
	ascii := true
	for j := start; j < len(b); j++ {
		c := b[j]
		switch {
		case c == '"':
			if !ascii && !utf8.Valid(b[start:j]) {
				return "", 0, false
			}
			return string(b[start:j]), j + 1, true
		case c == '\\' || c < 0x20:
			return "", 0, false
		case c >= 0x80:
			ascii = false
		}
	}
	return "", 0, false
}

// scanNumber reads a JSON number at b[i]; it returns its text and the index after it.
func scanNumber(b []byte, i int) (string, int, bool) {
	start := i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return "", 0, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return "", 0, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return "", 0, false
		}
	}
	return string(b[start:i]), i, true
}

// scanValue skips any JSON value at b[i] (objects and arrays balanced, strings with escapes
// allowed) and returns the index after it. It checks structure, not every detail of the
// grammar: its callers only use it for values encoding/json re-checks (properties) or for
// splitting, and fall back on doubt.
func scanValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch c := b[i]; {
	case c == '"':
		for j := i + 1; j < len(b); j++ {
			switch b[j] {
			case '\\':
				j++
			case '"':
				return j + 1, true
			}
		}
		return 0, false
	case c == '{' || c == '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, ok := scanValue(b, j)
				if !ok {
					return 0, false
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
		}
		return 0, false
	case c == '-' || c >= '0' && c <= '9':
		_, end, ok := scanNumber(b, i)
		return end, ok
	}
	for _, lit := range []string{"true", "false", "null"} {
		if len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit {
			return i + len(lit), true
		}
	}
	return 0, false
}

// fastRecord decodes one record object of the usual shape; ok is false when it cannot say.
func fastRecord(b []byte) (in Input, ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return Input{}, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return Input{}, skipSpace(b, i+1) == len(b)
	}
	for {
		var key string
		if key, i, ok = scanString(b, i); !ok {
			return Input{}, false
		}
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != ':' {
			return Input{}, false
		}
		i = skipSpace(b, i+1)
		if i >= len(b) {
			return Input{}, false
		}
		var s string
		switch key {
		case "quantity":
			if b[i] == '"' {
				s, i, ok = scanString(b, i)
			} else {
				s, i, ok = scanNumber(b, i)
			}
			if !ok {
				return Input{}, false
			}
			in.Quantity = money.Text(s)
		case "properties":
			if b[i] != '{' {
				return Input{}, false
			}
			start := i
			if i, ok = scanValue(b, i); !ok || !json.Valid(b[start:i]) {
				return Input{}, false
			}
			in.Properties = b[start:i:i]
		case "id", "tenantId", "subscriptionId", "sku", "timestamp", "region":
			if s, i, ok = scanString(b, i); !ok {
				return Input{}, false
			}
			switch key {
			case "id":
				in.ID = s
			case "tenantId":
				in.TenantID = s
			case "subscriptionId":
				in.SubscriptionID = s
			case "sku":
				in.SKU = s
			case "timestamp":
				in.Timestamp = s
			case "region":
				in.Region = s
			}
		default:
			return Input{}, false
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return Input{}, false
		}
		if b[i] == '}' {
			return in, skipSpace(b, i+1) == len(b)
		}
		if b[i] != ',' {
			return Input{}, false
		}
		i = skipSpace(b, i+1)
	}
}

// splitRecords splits {"records": [v, v, ...]} into its raw elements; ok is false for any other
// shape.
func splitRecords(b []byte) (out []json.RawMessage, ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	i = skipSpace(b, i+1)
	key, i, ok := scanString(b, i)
	if !ok || key != "records" {
		return nil, false
	}
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		return nil, false
	}
	i = skipSpace(b, i+1)
	if i >= len(b) || b[i] != '[' {
		return nil, false
	}
	i = skipSpace(b, i+1)
	out = []json.RawMessage{}
	if i < len(b) && b[i] == ']' {
		i++
	} else {
		for {
			start := i
			end, ok := scanValue(b, i)
			if !ok {
				return nil, false
			}
			out = append(out, b[start:end:end])
			i = skipSpace(b, end)
			if i >= len(b) {
				return nil, false
			}
			if b[i] == ']' {
				i++
				break
			}
			if b[i] != ',' {
				return nil, false
			}
			i = skipSpace(b, i+1)
		}
	}
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != '}' {
		return nil, false
	}
	return out, skipSpace(b, i+1) == len(b)
}
