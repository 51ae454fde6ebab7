// Package period holds billing periods (calendar months in UTC, written YYYY-MM, SPEC 4 and 11)
// and the one effective-dating rule of SPEC 8.3: a price-affecting change takes effect from the
// first period that starts on or after its date, and a period is priced with what was in effect
// at its first instant.
package period

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Period is a calendar month in UTC. The zero value is not a valid period; use Parse or Of.
type Period struct {
	Year  int
	Month time.Month
}

var (
	periodRe = regexp.MustCompile(`^\d{4}-\d{2}$`)
	dateRe   = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)
)

// ErrInvalid is wrapped by every error Parse and ParseDate return.
var ErrInvalid = errors.New("invalid period or date")

// Parse reads "YYYY-MM". It returns an error wrapping ErrInvalid for anything else.
func Parse(s string) (Period, error) {
	if !periodRe.MatchString(s) {
		return Period{}, fmt.Errorf("%w: %q is not YYYY-MM", ErrInvalid, s)
	}
	t, err := time.Parse("2006-01", s)
	if err != nil {
		return Period{}, fmt.Errorf("%w: %q is not YYYY-MM", ErrInvalid, s)
	}
	return Of(t), nil
}

// Of returns the period holding t (in UTC).
func Of(t time.Time) Period {
	t = t.UTC()
	return Period{Year: t.Year(), Month: t.Month()}
}

// String returns "YYYY-MM".
func (p Period) String() string { return fmt.Sprintf("%04d-%02d", p.Year, int(p.Month)) }

// Start returns the period's first instant (00:00 UTC on the 1st).
func (p Period) Start() time.Time { return time.Date(p.Year, p.Month, 1, 0, 0, 0, 0, time.UTC) }

// End returns the first instant after the period: the next period's Start.
func (p Period) End() time.Time { return p.Next().Start() }

// FirstDay returns the period's first day as "YYYY-MM-DD", the form effective dates are written in.
func (p Period) FirstDay() string { return p.Start().Format(time.DateOnly) }

// Next returns the period after p.
func (p Period) Next() Period { return Of(p.Start().AddDate(0, 1, 0)) }

// Prev returns the period before p.
func (p Period) Prev() Period { return Of(p.Start().AddDate(0, -1, 0)) }

// Compare returns -1, 0 or +1 as p is before, equal to or after q.
func (p Period) Compare(q Period) int { return p.Start().Compare(q.Start()) }

// Before reports whether p comes before q.
func (p Period) Before(q Period) bool { return p.Compare(q) < 0 }

// IsZero reports whether p is the zero value (no period).
func (p Period) IsZero() bool { return p.Year == 0 && p.Month == 0 }

// MarshalText writes "YYYY-MM".
func (p Period) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText reads "YYYY-MM"; the error wraps ErrInvalid.
func (p *Period) UnmarshalText(b []byte) error {
	q, err := Parse(string(b))
	if err != nil {
		return err
	}
	*p = q
	return nil
}

// OpenAPISchema describes a period as the string it is written as.
func (Period) OpenAPISchema() map[string]any {
	return map[string]any{"type": "string", "pattern": `^\d{4}-\d{2}$`, "example": "2026-10"}
}

// ParseDate reads a calendar date "YYYY-MM-DD" as midnight UTC. It returns an error wrapping
// ErrInvalid for anything else (including impossible dates such as 2026-02-30).
func ParseDate(s string) (time.Time, error) {
	if !dateRe.MatchString(s) {
		return time.Time{}, fmt.Errorf("%w: %q is not YYYY-MM-DD", ErrInvalid, s)
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %q is not a date", ErrInvalid, s)
	}
	return t, nil
}

// FirstFrom returns the first period that starts on or after t: the period holding t when t is
// that period's first instant, otherwise the next one. This is when a change dated t takes effect.
func FirstFrom(t time.Time) Period {
	p := Of(t)
	if t.UTC().Equal(p.Start()) {
		return p
	}
	return p.Next()
}

// InEffect reports whether a change dated effectiveFrom ("YYYY-MM-DD") is in effect in p, i.e. at
// p's first instant. A date that does not parse is never in effect.
func InEffect(effectiveFrom string, p Period) bool {
	t, err := ParseDate(effectiveFrom)
	return err == nil && !t.After(p.Start())
}
