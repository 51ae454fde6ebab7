package apperr_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/channelbilling/cms/shared/apperr"
)

func TestFields(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		var f apperr.Fields
		if f.Err() != nil {
			t.Fatal("empty Fields must give nil")
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		var f apperr.Fields
		f.Required("name", true)
		f.Add("parent.id", "invalid", "bad")
		err := f.Err()
		ae := apperr.As(err)
		if ae.Kind != apperr.Invalid || len(ae.Fields) != 2 || ae.Fields[1].Field != "parent.id" {
			t.Fatalf("got %+v", ae)
		}
	})
	t.Run("Merge", func(t *testing.T) {
		var inner apperr.Fields
		inner.Add("upTo", "invalid", "x")
		var f apperr.Fields
		f.Merge("tiers[1]", inner.Err())
		if got := apperr.As(f.Err()).Fields[0].Field; got != "tiers[1].upTo" {
			t.Fatalf("got %q", got)
		}
	})
}

func TestAsWrapsUnknown(t *testing.T) {
	err := fmt.Errorf("ctx: %w", errors.New("ResourceNotFoundException: table cms"))
	ae := apperr.As(err)
	if ae.Kind != apperr.Internal || ae.Message != "Internal error." {
		t.Fatalf("unknown errors must become internal, got %+v", ae)
	}
	wrapped := fmt.Errorf("outer: %w", apperr.New(apperr.Conflict, "billing_id_taken", "taken"))
	if apperr.KindOf(wrapped) != apperr.Conflict {
		t.Fatal("kind must survive wrapping")
	}
}
