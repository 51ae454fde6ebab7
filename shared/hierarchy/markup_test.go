package hierarchy_test

import (
	"testing"

	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/period"
)

func TestMarkupAt(t *testing.T) {
	// Newest first, as the service keeps them.
	e := &hierarchy.Entity{Markups: []hierarchy.Markup{
		{Markup: "15", StartDate: "2026-12-01"},
		{Markup: "12", StartDate: "2026-10-15"},
		{Markup: "10", StartDate: "2026-01-01"},
	}}
	for _, tc := range []struct {
		period, want string
	}{
		{"2025-12", ""},   // nothing in effect yet: no markup
		{"2026-01", "10"}, // starts exactly at the period's first instant
		{"2026-10", "10"}, // 12 % starts mid-October: October keeps 10 %
		{"2026-11", "12"}, // ... and it applies from November
		{"2026-12", "15"},
		{"2027-06", "15"},
	} {
		p, err := period.Parse(tc.period)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.MarkupAt(p); got != tc.want {
			t.Errorf("MarkupAt(%s) = %q, want %q", tc.period, got, tc.want)
		}
	}
}
