package usage_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/usage"
)

var now = time.Date(2026, 10, 20, 12, 0, 0, 0, time.UTC)

func valid() usage.Input {
	return usage.Input{ID: "r-1", TenantID: "tnt_1", SKU: "storage-gb", Quantity: "12.5", Timestamp: "2026-10-11T08:30:00+02:00"}
}

func fields(errs []apperr.FieldError) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Field+":"+e.Code)
	}
	slices.Sort(out)
	return out
}

func TestParse(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		in := valid()
		in.Region, in.Properties, in.SubscriptionID = "eu-west-1", json.RawMessage(`{ "vm": "a1",  "n": 2 }`), "sub_1"
		r, errs := in.Parse(now)
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		if !r.Timestamp.Equal(time.Date(2026, 10, 11, 6, 30, 0, 0, time.UTC)) || r.Timestamp.Location() != time.UTC {
			t.Errorf("timestamp %v, want UTC 06:30", r.Timestamp)
		}
		if r.Quantity.String() != "12.5" || string(r.Properties) != `{"vm":"a1","n":2}` || r.SubscriptionID != "sub_1" {
			t.Errorf("record %+v", r)
		}
	})
	t.Run("NumberQuantityStaysExact", func(t *testing.T) {
		in := valid()
		if err := json.Unmarshal([]byte(`0.1000000000000000055511151231257827`), &in.Quantity); err != nil {
			t.Fatal(err)
		}
		r, errs := in.Parse(now)
		if len(errs) > 0 || r.Quantity.String() != "0.1000000000000000055511151231257827" {
			t.Fatalf("%v %v", r.Quantity, errs)
		}
	})
	cases := []struct {
		name string
		edit func(*usage.Input)
		want []string
	}{
		{"ErrEverythingMissing", func(in *usage.Input) { *in = usage.Input{} },
			[]string{"id:required", "quantity:required", "sku:required", "tenantId:required", "timestamp:required"}},
		{"ErrBadValues", func(in *usage.Input) {
			in.ID, in.TenantID, in.SKU, in.Quantity, in.Timestamp = "a\nb", "tnt 1", "-gb", "1,5", "yesterday"
		}, []string{"id:invalid", "quantity:invalid", "sku:invalid", "tenantId:invalid", "timestamp:invalid"}},
		{"ErrNegative", func(in *usage.Input) { in.Quantity = "-1" }, []string{"quantity:negative"}},
		{"ErrHuge", func(in *usage.Input) { in.Quantity = "1e19" }, []string{"quantity:out_of_range"}},
		{"ErrFloatSyntax", func(in *usage.Input) { in.Quantity = "NaN" }, []string{"quantity:invalid"}},
		{"ErrFuture", func(in *usage.Input) { in.Timestamp = "2026-10-20T12:10:00Z" }, []string{"timestamp:in_future"}},
		{"ErrAncient", func(in *usage.Input) { in.Timestamp = "1999-12-31T23:59:59Z" }, []string{"timestamp:out_of_range"}},
		{"ErrLongID", func(in *usage.Input) { in.ID = strings.Repeat("x", 129) }, []string{"id:too_long"}},
		{"ErrSubscription", func(in *usage.Input) { in.SubscriptionID = "sub/1" }, []string{"subscriptionId:invalid"}},
		{"ErrRegion", func(in *usage.Input) { in.Region = strings.Repeat("r", 65) }, []string{"region:too_long"}},
		{"ErrPropertiesNotObject", func(in *usage.Input) { in.Properties = json.RawMessage(`[1]`) }, []string{"properties:invalid"}},
		{"ErrPropertiesTooLong", func(in *usage.Input) {
			in.Properties = json.RawMessage(`{"k":"` + strings.Repeat("v", 600) + `"}`)
		}, []string{"properties:too_long"}},
		{"OKZeroQuantity", func(in *usage.Input) { in.Quantity = "0" }, nil},
		{"OKSkew", func(in *usage.Input) { in.Timestamp = "2026-10-20T12:04:00Z" }, nil},
		{"OKNullProperties", func(in *usage.Input) { in.Properties = json.RawMessage(`null`) }, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := valid()
			tc.edit(&in)
			_, errs := in.Parse(now)
			if got := fields(errs); !slices.Equal(got, tc.want) {
				t.Fatalf("errors %v, want %v", got, tc.want)
			}
			for _, e := range errs {
				if e.Message == "" {
					t.Errorf("%s: no message", e.Field)
				}
			}
		})
	}
}

func TestDecodeBatch(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		items, err := usage.DecodeBatch([]byte(`{"records": [
			{"id":"a","tenantId":"tnt_1","sku":"gb","quantity":1.5,"timestamp":"2026-10-01T00:00:00Z"},
			{"id":"b","tenantId":"tnt_1","sku":"gb","quantity":"2","timestamp":"2026-10-01T00:00:00Z","color":"red"},
			{"id":"c","tenantId":"tnt_1","sku":"gb","quantity":true},
			"not an object"]}`))
		if err != nil {
			t.Fatal(err)
		}
		if len(items) != 4 || items[0].Ref != "records[0]" || items[0].Input.Quantity != "1.5" || len(items[0].Errs) > 0 {
			t.Fatalf("items[0] %+v", items[0])
		}
		if got := fields(items[1].Errs); !slices.Equal(got, []string{"color:unknown_field"}) {
			t.Errorf("items[1] errors %v", got)
		}
		if got := fields(items[2].Errs); !slices.Equal(got, []string{"quantity:invalid_type"}) {
			t.Errorf("items[2] errors %v", got)
		}
		if got := fields(items[3].Errs); !slices.Equal(got, []string{":invalid_json"}) {
			t.Errorf("items[3] errors %v", got)
		}
	})
	for name, body := range map[string]string{
		"ErrEmpty": ``, "ErrNotJSON": `{`, "ErrNoRecords": `{}`, "ErrUnknownField": `{"records":[],"x":1}`,
		"ErrRecordsNotArray": `{"records":{}}`, "ErrTrailing": `{"records":[]} {}`,
		"ErrTooMany": `{"records":[` + strings.TrimSuffix(strings.Repeat(`{},`, usage.MaxAPIBatch+1), ",") + `]}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := usage.DecodeBatch([]byte(body)); !apperr.Is(err, apperr.Invalid) {
				t.Fatalf("err %v, want Invalid", err)
			}
		})
	}
}

func TestDecodeMessage(t *testing.T) {
	rec := `{"id":"a","tenantId":"tnt_1","sku":"gb","quantity":1,"timestamp":"2026-10-01T00:00:00Z"}`
	cases := []struct {
		name, body string
		n          int
		errs       []int // items with errors
	}{
		{"OneRecord", rec, 1, nil},
		{"Records", `{"records":[` + rec + `,` + rec + `]}`, 2, nil},
		{"RecordWithRecordsProperty", `{"id":"a","tenantId":"tnt_1","sku":"gb","quantity":1,"timestamp":"2026-10-01T00:00:00Z","properties":{"records":3}}`, 1, nil},
		{"ErrNotJSON", `hello`, 1, []int{0}},
		{"ErrRecordsAndMore", `{"records":[],"id":"a"}`, 1, []int{0}},
		{"OneBadAmongGood", `{"records":[` + rec + `,{"id":"b","x":1}]}`, 2, []int{1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			items := usage.DecodeMessage("m1", []byte(tc.body))
			if len(items) != tc.n {
				t.Fatalf("%d items, want %d", len(items), tc.n)
			}
			for i, it := range items {
				if bad := len(it.Errs) > 0; bad != slices.Contains(tc.errs, i) {
					t.Errorf("item %d errors %v", i, it.Errs)
				}
				if !strings.HasPrefix(it.Ref, "m1") || len(it.Raw) == 0 {
					t.Errorf("item %d ref %q raw %q", i, it.Ref, it.Raw)
				}
			}
		})
	}
}

func TestThresholdEventID(t *testing.T) {
	k := usage.AggregateKey{SubscriptionID: "sub_1", SKU: "gb", Period: mustPeriod(t, "2026-10")}
	a := usage.ThresholdEventID(k, money.NewFromInt(100))
	b := usage.ThresholdEventID(k, money.New(10000, 2)) // 100.00
	k.Period = mustPeriod(t, "2026-11")
	c := usage.ThresholdEventID(k, money.NewFromInt(100))
	if a != b || a == c || !strings.HasPrefix(a, "evt_") {
		t.Fatalf("ids %s %s %s", a, b, c)
	}
}
