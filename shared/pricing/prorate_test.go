package pricing_test

import (
	"testing"
	"time"

	"github.com/channelbilling/cms/shared/pricing"
)

func TestProrate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		amount  string
		active  int
		days    int
		want    string // exact text
		wantErr string // field of the expected error
	}{
		{"OK/worked example", "300.00", 21, 31, "203.2258064516129032258064516129032", ""},
		{"OK/full month is the amount", "300.00", 31, 31, "300.00", ""},
		{"OK/no day", "300.00", 0, 31, "0.00", ""},
		{"OK/half of February", "28", 14, 28, "14", ""},
		{"OK/negative amount (credit)", "-10", 1, 3, "-3.333333333333333333333333333333333", ""},
		{"ErrZeroDays", "1", 0, 0, "", "daysInPeriod"},
		{"ErrNegativeActive", "1", -1, 30, "", "activeDays"},
		{"ErrTooManyActive", "1", 32, 31, "", "activeDays"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pricing.Prorate(MustDecimal(t, tc.amount), tc.active, tc.days)
			if tc.wantErr != "" {
				assertStrings(t, "errors", fieldCodes(err), []string{tc.wantErr + ":invalid"})
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tc.want {
				t.Fatalf("Prorate = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestDaysInMonth(t *testing.T) {
	for _, tc := range []struct {
		name  string
		year  int
		month time.Month
		want  int
	}{
		{"OK/October", 2026, time.October, 31},
		{"OK/April", 2026, time.April, 30},
		{"OK/February", 2026, time.February, 28},
		{"OK/February leap", 2028, time.February, 29},
		{"OK/February century", 2100, time.February, 28},
		{"OK/February 400", 2000, time.February, 29},
		{"OK/December", 2026, time.December, 31},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := pricing.DaysInMonth(tc.year, tc.month); got != tc.want {
				t.Fatalf("DaysInMonth = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestActiveDays(t *testing.T) {
	at := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	var open time.Time
	for _, tc := range []struct {
		name       string
		year       int
		month      time.Month
		start, end time.Time
		want       int
	}{
		{"OK/worked example", 2026, time.October, at("2026-10-11T00:00:00Z"), open, 21},
		{"OK/start day counts late in the day", 2026, time.October, at("2026-10-11T23:59:59Z"), open, 21},
		{"OK/started before the month", 2026, time.October, at("2025-01-15T10:00:00Z"), open, 31},
		{"OK/started on the first", 2026, time.October, at("2026-10-01T00:00:00Z"), open, 31},
		{"OK/started on the last day", 2026, time.October, at("2026-10-31T12:00:00Z"), open, 1},
		{"OK/cancel day does not count", 2026, time.October, at("2026-10-11T00:00:00Z"), at("2026-10-20T00:00:00Z"), 9},
		{"OK/cancel late in the day does not count", 2026, time.October, at("2026-10-11T00:00:00Z"), at("2026-10-20T23:00:00Z"), 9},
		{"OK/cancel on the start day", 2026, time.October, at("2026-10-11T08:00:00Z"), at("2026-10-11T18:00:00Z"), 0},
		{"OK/cancel at next period start", 2026, time.October, at("2026-10-11T00:00:00Z"), at("2026-11-01T00:00:00Z"), 21},
		{"OK/cancel after the month", 2026, time.October, at("2026-09-01T00:00:00Z"), at("2027-01-01T00:00:00Z"), 31},
		{"OK/cancel on the first of the month", 2026, time.October, at("2026-09-01T00:00:00Z"), at("2026-10-01T00:00:00Z"), 0},
		{"OK/cancel on the second of the month", 2026, time.October, at("2026-09-01T00:00:00Z"), at("2026-10-02T00:00:00Z"), 1},
		{"OK/starts after the month", 2026, time.October, at("2026-11-01T00:00:00Z"), open, 0},
		{"OK/ended before the month", 2026, time.October, at("2026-01-01T00:00:00Z"), at("2026-09-30T00:00:00Z"), 0},
		{"OK/end before start", 2026, time.October, at("2026-10-20T00:00:00Z"), at("2026-10-10T00:00:00Z"), 0},
		{"OK/leap February", 2028, time.February, at("2028-01-01T00:00:00Z"), open, 29},
		{"OK/dates are UTC dates", 2026, time.October, at("2026-10-11T01:00:00+02:00"), open, 22},
		{"OK/end in another zone", 2026, time.October, at("2026-10-01T00:00:00Z"), at("2026-10-02T01:00:00+02:00"), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := pricing.ActiveDays(tc.year, tc.month, tc.start, tc.end); got != tc.want {
				t.Fatalf("ActiveDays = %d, want %d", got, tc.want)
			}
		})
	}
	t.Run("OK/segments meeting on a day share it", func(t *testing.T) {
		change := at("2026-10-15T09:30:00Z")
		a := pricing.ActiveDays(2026, time.October, at("2026-10-01T00:00:00Z"), change)
		b := pricing.ActiveDays(2026, time.October, change, open)
		if a != 14 || b != 17 || a+b != 31 {
			t.Fatalf("segments = %d + %d, want 14 + 17", a, b)
		}
	})
}
