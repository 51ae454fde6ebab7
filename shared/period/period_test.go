package period_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/channelbilling/cms/shared/period"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"2026-10", "2026-10", true},
		{"2026-01", "2026-01", true},
		{"2026-13", "", false},
		{"2026-1", "", false},
		{"2026-10-01", "", false},
		{" 2026-10", "", false},
		{"", "", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			p, err := period.Parse(tc.in)
			if tc.ok != (err == nil) {
				t.Fatalf("err %v", err)
			}
			if err != nil && !errors.Is(err, period.ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			if tc.ok && p.String() != tc.want {
				t.Fatalf("got %s", p)
			}
		})
	}
}

func TestBoundaries(t *testing.T) {
	p, _ := period.Parse("2026-12")
	if got := p.Start(); !got.Equal(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("start %v", got)
	}
	if got := p.End(); !got.Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("end %v", got)
	}
	if p.Next().String() != "2027-01" || p.Prev().String() != "2026-11" || p.FirstDay() != "2026-12-01" {
		t.Fatalf("next %s prev %s first %s", p.Next(), p.Prev(), p.FirstDay())
	}
	if !p.Prev().Before(p) || p.Before(p) || p.Compare(p) != 0 {
		t.Fatal("ordering")
	}
}

func TestFirstFrom(t *testing.T) {
	for _, tc := range []struct {
		name string
		at   time.Time
		want string
	}{
		{"OK/FirstInstant", time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), "2026-10"},
		{"OK/OneSecondLater", time.Date(2026, 10, 1, 0, 0, 1, 0, time.UTC), "2026-11"},
		{"OK/MidMonth", time.Date(2026, 10, 11, 12, 0, 0, 0, time.UTC), "2026-11"},
		{"OK/YearEnd", time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC), "2027-01"},
		{"OK/OtherZone", time.Date(2026, 10, 1, 2, 0, 0, 0, time.FixedZone("CEST", 2*3600)), "2026-10"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := period.FirstFrom(tc.at).String(); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestInEffect(t *testing.T) {
	oct, _ := period.Parse("2026-10")
	for _, tc := range []struct {
		from string
		want bool
	}{
		{"2026-10-01", true},  // starts exactly at the period's first instant
		{"2026-09-15", true},  // started during the previous period
		{"2026-10-02", false}, // starts during the period: only from November
		{"2026-11-01", false},
		{"garbage", false},
	} {
		if got := period.InEffect(tc.from, oct); got != tc.want {
			t.Errorf("InEffect(%s, 2026-10) = %v", tc.from, got)
		}
	}
}

func TestJSON(t *testing.T) {
	var v struct {
		P period.Period `json:"p"`
	}
	if err := json.Unmarshal([]byte(`{"p":"2026-10"}`), &v); err != nil || v.P.String() != "2026-10" {
		t.Fatalf("%v %v", v.P, err)
	}
	if err := json.Unmarshal([]byte(`{"p":"2026-1"}`), &v); err == nil {
		t.Fatal("bad period accepted")
	}
	b, _ := json.Marshal(v)
	if string(b) != `{"p":"2026-10"}` {
		t.Fatalf("%s", b)
	}
}

func TestParseDate(t *testing.T) {
	if _, err := period.ParseDate("2026-02-30"); err == nil {
		t.Fatal("impossible date accepted")
	}
	if _, err := period.ParseDate("2026-2-3"); err == nil {
		t.Fatal("short date accepted")
	}
	d, err := period.ParseDate("2026-02-28")
	if err != nil || !d.Equal(time.Date(2026, 2, 28, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("%v %v", d, err)
	}
}
