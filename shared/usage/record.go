package usage

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/money"
)

// Limits on a record. They keep every record's storage item under 1 KB (one write unit) and
// catch producer bugs early; docs/usage.md lists them.
const (
	MaxIDLen         = 128
	MaxEntityIDLen   = 64
	MaxSKULen        = 64
	MaxRegionLen     = 64
	MaxPropertiesLen = 512
	// FutureSkew is how far ahead of our clock a timestamp may lie (producers' clocks drift).
	FutureSkew = 5 * time.Minute
)

var (
	// maxQuantity bounds one record's quantity: 10^18 units (an exabyte in bytes).
	maxQuantity = money.New(1_000_000_000_000_000_000, 0)
	// minTime is the earliest accepted timestamp.
	minTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Input is a usage record as it arrives through any channel (SPEC 10):
// {"id", "tenantId", "subscriptionId"?, "sku", "quantity", "timestamp", "region"?, "properties"?}.
// Quantity may be a JSON string or number; it is read from its text, never through a float.
type Input struct {
	ID             string          `json:"id"`
	TenantID       string          `json:"tenantId"`
	SubscriptionID string          `json:"subscriptionId,omitempty"`
	SKU            string          `json:"sku"`
	Quantity       money.Text      `json:"quantity"`
	Timestamp      string          `json:"timestamp"`
	Region         string          `json:"region,omitempty"`
	Properties     json.RawMessage `json:"properties,omitempty"`
}

// Record is a valid usage record.
type Record struct {
	ID             string
	TenantID       string
	SubscriptionID string
	// SKU is the code as written by the producer until resolution, the catalog's code after.
	SKU        string
	Quantity   money.Decimal
	Timestamp  time.Time
	Region     string
	Properties json.RawMessage
	Source     Source
}

// Parse validates in and returns the record, or every problem at once as field errors whose
// Field is the record's JSON field ("quantity", "timestamp"). now bounds the timestamp.
func (in *Input) Parse(now time.Time) (Record, []apperr.FieldError) {
	var errs []apperr.FieldError
	add := func(field, code, msg string) {
		errs = append(errs, apperr.FieldError{Field: field, Code: code, Message: msg})
	}
	r := Record{ID: in.ID, TenantID: in.TenantID, SubscriptionID: in.SubscriptionID, SKU: in.SKU, Region: in.Region}
	switch {
	case in.ID == "":
		add("id", "required", "id is required")
	case len(in.ID) > MaxIDLen:
		add("id", "too_long", "id must be at most 128 characters")
	case !printable(in.ID):
		add("id", "invalid", "id must be printable text without control characters")
	}
	switch {
	case in.TenantID == "":
		add("tenantId", "required", "tenantId is required")
	case !entityID(in.TenantID):
		add("tenantId", "invalid", "tenantId must be an entity id (letters, digits, _ and -, at most 64)")
	}
	if in.SubscriptionID != "" && !entityID(in.SubscriptionID) {
		add("subscriptionId", "invalid", "subscriptionId must be an id (letters, digits, _ and -, at most 64)")
	}
	switch {
	case in.SKU == "":
		add("sku", "required", "sku is required")
	case !skuCode(in.SKU):
		add("sku", "invalid", "sku must be a SKU code: 1 to 64 letters, digits or . _ : - starting with a letter or digit")
	}
	if in.Quantity == "" {
		add("quantity", "required", "quantity is required")
	} else if q, err := in.Quantity.Decimal(); err != nil {
		add("quantity", "invalid", "quantity must be a decimal number such as 12.5")
	} else if q.IsNeg() {
		add("quantity", "negative", "quantity must not be negative")
	} else if q.Cmp(maxQuantity) > 0 {
		add("quantity", "out_of_range", "quantity must be at most 10^18")
	} else {
		r.Quantity = q
	}
	if in.Timestamp == "" {
		add("timestamp", "required", "timestamp is required")
	} else if ts, err := time.Parse(time.RFC3339Nano, in.Timestamp); err != nil {
		add("timestamp", "invalid", "timestamp must be RFC 3339, such as 2026-10-11T08:30:00Z")
	} else {
		ts = ts.UTC()
		switch {
		case ts.After(now.Add(FutureSkew)):
			add("timestamp", "in_future", "timestamp lies in the future")
		case ts.Before(minTime):
			add("timestamp", "out_of_range", "timestamp must not be before 2000-01-01")
		}
		r.Timestamp = ts
	}
	switch {
	case len(in.Region) > MaxRegionLen:
		add("region", "too_long", "region must be at most 64 characters")
	case !printable(in.Region):
		add("region", "invalid", "region must be printable text")
	}
	if p := bytes.TrimSpace(in.Properties); len(p) > 0 && string(p) != "null" {
		var buf bytes.Buffer
		switch {
		case p[0] != '{':
			add("properties", "invalid", "properties must be a JSON object")
		case json.Compact(&buf, p) != nil:
			add("properties", "invalid", "properties must be a JSON object")
		case buf.Len() > MaxPropertiesLen:
			add("properties", "too_long", "properties must be at most 512 bytes of JSON")
		default:
			r.Properties = buf.Bytes()
		}
	}
	return r, errs
}

// printable reports valid UTF-8 without control characters.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return utf8.ValidString(s)
}

// entityID matches the platform's ids: letters, digits, '_' and '-', 1 to 64.
func entityID(s string) bool {
	if len(s) == 0 || len(s) > MaxEntityIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// skuCode matches the catalog's SKU codes: ^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$.
func skuCode(s string) bool {
	if len(s) == 0 || len(s) > MaxSKULen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || !strings.ContainsRune("._:-", rune(c))) {
			return false
		}
	}
	return true
}
