package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"

	"github.com/channelbilling/cms/shared/apperr"
)

// DecodeJSON decodes body into v strictly: unknown fields, wrong types, trailing data and an
// empty body are Invalid errors naming the field. Numbers are kept exact (json.Number).
func DecodeJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return apperr.New(apperr.Invalid, "empty_body", "The request needs a JSON body.")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return apperr.New(apperr.Invalid, "invalid_json", "The body must hold exactly one JSON value.")
	}
	return nil
}

func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	msg := err.Error()
	switch {
	case errors.As(err, &syn), errors.Is(err, io.ErrUnexpectedEOF):
		return apperr.New(apperr.Invalid, "invalid_json", "The body is not valid JSON.")
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return apperr.New(apperr.Invalid, "invalid_json", "The body must be a JSON object.")
		}
		return apperr.Field(field, "invalid_type", field+" must be a "+jsonType(typ.Type.String()))
	case strings.HasPrefix(msg, "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(msg, "json: unknown field "), `"`)
		return apperr.Field(name, "unknown_field", "unknown field "+name)
	}
	return apperr.New(apperr.Invalid, "invalid_json", "The body could not be read as the expected JSON object.")
}

func jsonType(goType string) string {
	switch {
	case strings.Contains(goType, "int"), strings.Contains(goType, "Number"), strings.HasSuffix(goType, "money.Text"):
		return "number"
	case strings.Contains(goType, "bool"):
		return "boolean"
	case strings.HasPrefix(goType, "[]"):
		return "array"
	case goType == "string", strings.HasSuffix(goType, "EntityType"), strings.HasSuffix(goType, "Role"):
		return "string"
	}
	return "object"
}
