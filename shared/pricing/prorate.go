package pricing

import (
	"fmt"
	"time"

	"github.com/channelbilling/cms/shared/money"
)

// Prorate returns amount * activeDays / daysInPeriod at full precision (SPEC 11). The
// multiplication comes first so that the only inexact step is the one division:
// Prorate(300, 21, 31) = 6300/31 = 203.2258064516129032258064516129032.
// It returns a *FieldError when daysInPeriod is not positive or activeDays is outside
// [0, daysInPeriod].
func Prorate(amount money.Decimal, activeDays, daysInPeriod int) (money.Decimal, error) {
	if daysInPeriod <= 0 {
		return money.Zero, &FieldError{Field: "daysInPeriod", Code: CodeInvalid, Message: "must be greater than 0"}
	}
	if activeDays < 0 || activeDays > daysInPeriod {
		return money.Zero, &FieldError{Field: "activeDays", Code: CodeInvalid,
			Message: fmt.Sprintf("must be between 0 and %d", daysInPeriod)}
	}
	return amount.Mul(money.NewFromInt(int64(activeDays))).Div(money.NewFromInt(int64(daysInPeriod)))
}

// DaysInMonth returns the number of days of the calendar month (28 to 31). Months outside 1-12
// are normalised as time.Date does (month 13 of 2026 is January 2027).
func DaysInMonth(year int, month time.Month) int {
	return time.Date(year, month+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// ActiveDays returns how many days of the calendar month (UTC) the segment [start, end) covers:
// the UTC day of start counts, the UTC day of end does not (SPEC 11: the start day counts, the
// cancel day does not). A zero end means the segment is still open. Only the dates matter, not
// the times of day, so segments that meet on a day (a quantity change) share it without double
// counting: the earlier one ends there, the later one starts there. The result is between 0 and
// DaysInMonth(year, month); it is 0 when end is not after start.
func ActiveDays(year int, month time.Month, start, end time.Time) int {
	first := time.Date(year, month, 1, 0, 0, 0, 0, time.UTC)
	next := first.AddDate(0, 1, 0)
	from := utcDate(start)
	if from.Before(first) {
		from = first
	}
	to := next
	if !end.IsZero() && utcDate(end).Before(next) {
		to = utcDate(end)
	}
	if !to.After(from) {
		return 0
	}
	// Both bounds lie within one month, so the difference is a whole number of days below 32.
	return int(to.Sub(from) / (24 * time.Hour))
}

// utcDate returns midnight UTC of t's UTC date.
func utcDate(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
