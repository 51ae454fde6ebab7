package usage

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzDecodeRecord checks the fast path against encoding/json: whenever fastRecord accepts an
// input, encoding/json accepts it too and decodes the same record.
func FuzzDecodeRecord(f *testing.F) {
	for _, s := range []string{
		`{"id":"a","tenantId":"tnt_1","sku":"gb","quantity":1.5,"timestamp":"2026-10-01T00:00:00Z"}`,
		`{"id":"a","tenantId":"tnt_1","subscriptionId":"sub_1","sku":"gb","quantity":"2","timestamp":"2026-10-01T00:00:00Z","region":"eu","properties":{"a":[1,{"b":"}"}]}}`,
		` { "id" : "é" , "quantity" : -0.0e+5 } `,
		`{"id":"a\"b"}`, `{"Id":"a"}`, `{"quantity":01}`, `{"properties":{"a" 1}}`, `{}`, `{"id":"a"}}`,
		`{"id":"a","id":"b"}`, `{"quantity":null}`, "{\"id\":\"\xff\"}", `{"properties":{"a":"\u0000"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := fastRecord(b)
		if !ok {
			return
		}
		std, errs := decodeRecordStd(b)
		if len(errs) > 0 {
			t.Fatalf("fast path accepted %q, encoding/json refused it: %v", b, errs)
		}
		if fast.ID != std.ID || fast.TenantID != std.TenantID || fast.SubscriptionID != std.SubscriptionID || fast.SKU != std.SKU ||
			fast.Quantity != std.Quantity || fast.Timestamp != std.Timestamp || fast.Region != std.Region ||
			!bytes.Equal(fast.Properties, std.Properties) {
			t.Fatalf("%q: fast %+v, encoding/json %+v", b, fast, std)
		}
	})
}

// FuzzSplitRecords checks that splitting never loses or invents a record: when splitRecords
// accepts a body that encoding/json also reads as {"records": [...]}, both give the same
// elements.
func FuzzSplitRecords(f *testing.F) {
	for _, s := range []string{`{"records":[]}`, `{"records":[{"id":"a"},{"id":"]"}, 1, "x", [2]]}`, ` {"records" : [ {} ] } `, `{"records":[{"a":{"b":"\"}"}}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		parts, ok := splitRecords(b)
		if !ok {
			return
		}
		var env BatchInput
		if err := json.Unmarshal(b, &env); err != nil {
			return // the fast split is more lenient: each element is then decoded on its own
		}
		if len(parts) != len(env.Records) {
			t.Fatalf("%q: %d parts, encoding/json %d", b, len(parts), len(env.Records))
		}
		for i := range parts {
			if !bytes.Equal(bytes.TrimSpace(parts[i]), bytes.TrimSpace(env.Records[i])) {
				t.Fatalf("%q: part %d %q, encoding/json %q", b, i, parts[i], env.Records[i])
			}
		}
	})
}
