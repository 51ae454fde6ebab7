package listing_test

import (
	"fmt"
	"testing"

	"github.com/channelbilling/cms/shared/listing"
)

type item struct{ id, name string }

var fields = listing.Fields[item]{
	ID:          func(i item) string { return i.id },
	Searchable:  map[string]func(item) string{"name": func(i item) string { return i.name }},
	DefaultSort: "name",
}

func TestApplyPagesThroughEverything(t *testing.T) {
	var items []item
	for i := 0; i < 23; i++ {
		items = append(items, item{fmt.Sprintf("id%02d", i), fmt.Sprintf("Name %d", i%5)})
	}
	for _, desc := range []bool{false, true} {
		q := listing.Query{PageSize: 5, Desc: desc}
		if err := fields.Validate(&q); err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		var after *listing.Cursor
		var prev *item
		pages := 0
		for {
			page, next := listing.Apply(fields, items, q, after)
			pages++
			for _, it := range page {
				if seen[it.id] {
					t.Fatalf("%s seen twice", it.id)
				}
				seen[it.id] = true
				if prev != nil && (prev.name > it.name) != desc && prev.name != it.name {
					t.Fatalf("order broken: %v then %v", *prev, it)
				}
				p := it
				prev = &p
			}
			if next == nil {
				break
			}
			after = next
		}
		if len(seen) != 23 || pages != 5 {
			t.Fatalf("desc=%v: saw %d items in %d pages", desc, len(seen), pages)
		}
	}
}

func TestSearchAndValidate(t *testing.T) {
	items := []item{{"a", "Acme"}, {"b", "Globex"}, {"c", "ACME West"}}
	q := listing.Query{Search: "acme"}
	if err := fields.Validate(&q); err != nil {
		t.Fatal(err)
	}
	page, next := listing.Apply(fields, items, q, nil)
	if len(page) != 2 || next != nil {
		t.Fatalf("got %v", page)
	}
	bad := listing.Query{Sort: "password", PageSize: 501}
	if err := fields.Validate(&bad); err == nil {
		t.Fatal("bad sort and page size must be refused")
	}
}
