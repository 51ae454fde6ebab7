package deadletters_test

import (
	"encoding/json"
	"testing"

	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/deadletters"
)

func TestLetter(t *testing.T) {
	for name, tc := range map[string]struct{ raw, record, replay string }{
		"JSON":    {`{"id":"a","quantity":-1}`, `{"id":"a","quantity":-1}`, `{"id":"a","quantity":-1}`},
		"NotJSON": {"not \"json\"", `"not \"json\""`, "not \"json\""},
	} {
		t.Run(name, func(t *testing.T) {
			l := deadletters.Letter{Reason: []apperr.FieldError{{Field: "quantity", Code: "negative", Message: "quantity must not be negative"}, {Code: "x", Message: "whole"}},
				Source: deadletters.Source{Channel: "queue", Ref: "message m1"}, Record: deadletters.RecordBody([]byte(tc.raw))}
			if string(l.Record) != tc.record || l.ReplayBody() != tc.replay {
				t.Fatalf("record %s replay %s", l.Record, l.ReplayBody())
			}
			b, err := json.Marshal(l)
			if err != nil {
				t.Fatal(err)
			}
			var back deadletters.Letter
			if err := json.Unmarshal(b, &back); err != nil || back.ReplayBody() != tc.replay {
				t.Fatalf("round trip %s: %v", b, err)
			}
			if got := l.ReasonText(); got != "quantity: quantity must not be negative; whole" {
				t.Fatalf("reason %q", got)
			}
		})
	}
}

func TestMessageReason(t *testing.T) {
	m := deadletters.Message{Body: `{"id":"a"}`}
	if m.ReplayBody() != `{"id":"a"}` || m.Reason() == "" {
		t.Fatalf("%+v", m)
	}
}
