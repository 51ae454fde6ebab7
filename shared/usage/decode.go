package usage

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/channelbilling/cms/shared/apperr"
)

// MaxAPIBatch is the most records one POST /api/v1/usage may carry (SPEC 10).
const MaxAPIBatch = 1000

// Item is one record as a channel delivered it, before validation.
type Item struct {
	// Ref says where the record came from, for answers, reports, dead letters and logs:
	// "records[3]", "line 12", "message <id>[2]", "sequence <n>".
	Ref string
	// Raw is the record as delivered (JSON channels), kept for dead letters.
	Raw []byte
	// Input is the decoded record; meaningless when Errs is set.
	Input Input
	// Errs are the decoding problems (not JSON, unknown field, wrong type, bad CSV line).
	Errs []apperr.FieldError
	// Redelivered reports that the channel delivered this record before (an SQS message
	// received more than once, a retried stream batch).
	Redelivered bool
}

// DecodeRecord decodes one JSON record strictly: unknown fields, wrong types and trailing data
// are field errors naming the field. Numbers are kept as written.
func DecodeRecord(raw []byte) (Input, []apperr.FieldError) {
	if in, ok := fastRecord(raw); ok {
		return in, nil
	}
	return decodeRecordStd(raw)
}

// decodeRecordStd is DecodeRecord through encoding/json, which names the field of any problem.
func decodeRecordStd(raw []byte) (Input, []apperr.FieldError) {
	var in Input
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return Input{}, []apperr.FieldError{jsonFieldError(err)}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Input{}, []apperr.FieldError{{Code: "invalid_json", Message: "the record must be exactly one JSON object"}}
	}
	return in, nil
}

// jsonFieldError names the field a decoding error is about.
func jsonFieldError(err error) apperr.FieldError {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	msg := err.Error()
	switch {
	case errors.As(err, &syn), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return apperr.FieldError{Code: "invalid_json", Message: "the record is not valid JSON"}
	case errors.As(err, &typ):
		if typ.Field == "" {
			return apperr.FieldError{Code: "invalid_json", Message: "the record must be a JSON object"}
		}
		want := "a string"
		if typ.Field == "quantity" {
			want = "a decimal number or string"
		} else if typ.Field == "properties" {
			want = "an object"
		}
		return apperr.FieldError{Field: typ.Field, Code: "invalid_type", Message: typ.Field + " must be " + want}
	case strings.HasPrefix(msg, "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(msg, "json: unknown field "), `"`)
		return apperr.FieldError{Field: name, Code: "unknown_field", Message: "unknown field " + name}
	}
	return apperr.FieldError{Code: "invalid_json", Message: "the record could not be read"}
}

// BatchInput is the body of POST /api/v1/usage: {"records": [...]}, at most MaxAPIBatch.
type BatchInput struct {
	Records []json.RawMessage `json:"records"`
}

// DecodeBatch decodes an API body: the envelope strictly (Invalid naming the field, 400), then
// each record on its own, so that a bad record is rejected alone while the others are counted.
func DecodeBatch(body []byte) ([]Item, error) {
	if raws, ok := splitRecords(body); ok && len(raws) <= MaxAPIBatch {
		return decodeAll("", raws), nil
	}
	var in BatchInput
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, apperr.New(apperr.Invalid, "empty_body", "The request needs a JSON body: {\"records\": [...]}.")
	}
	if err := dec.Decode(&in); err != nil {
		fe := jsonFieldError(err)
		if fe.Field == "" {
			return nil, apperr.New(apperr.Invalid, "invalid_json", "The body must be a JSON object {\"records\": [...]}.")
		}
		if fe.Field == "records" {
			fe.Message = "records must be an array of usage records"
		}
		return nil, apperr.Field(fe.Field, fe.Code, fe.Message)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, apperr.New(apperr.Invalid, "invalid_json", "The body must hold exactly one JSON value.")
	}
	switch {
	case in.Records == nil:
		return nil, apperr.Field("records", "required", "records is required")
	case len(in.Records) > MaxAPIBatch:
		return nil, apperr.Field("records", "too_many", fmt.Sprintf("records holds at most %d records per call", MaxAPIBatch))
	}
	return decodeAll("", in.Records), nil
}

// decodeAll decodes the elements of a records array; prefix starts each Ref.
func decodeAll(prefix string, raws []json.RawMessage) []Item {
	items := make([]Item, len(raws))
	for i, raw := range raws {
		items[i] = Item{Ref: prefix + "records[" + strconv.Itoa(i) + "]", Raw: raw}
		items[i].Input, items[i].Errs = DecodeRecord(raw)
	}
	return items
}

var recordsKey = []byte(`"records"`)

// DecodeMessage decodes a queue message: one record, or {"records": [...]} (SPEC 10). ref
// prefixes each item's Ref. A body that is neither is one item with its errors.
func DecodeMessage(ref string, body []byte) []Item {
	if bytes.Contains(body, recordsKey) {
		if raws, ok := splitRecords(body); ok {
			return decodeAll(ref+" ", raws)
		}
		var env BatchInput
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&env); err == nil && env.Records != nil {
			if _, err := dec.Token(); errors.Is(err, io.EOF) {
				return decodeAll(ref+" ", env.Records)
			}
		}
	}
	it := Item{Ref: ref, Raw: body}
	it.Input, it.Errs = DecodeRecord(body)
	return []Item{it}
}
