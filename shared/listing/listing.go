// Package listing applies the list conventions of the API (search, sort, dir, page_size, next)
// to a set of items, the same way for every resource.
package listing

import (
	"sort"
	"strings"

	"github.com/channelbilling/cms/shared/apperr"
)

// Page size bounds (SPEC 4).
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// Query is a list request: the part of it that the next token must carry unchanged.
type Query struct {
	Search   string            `json:"s,omitempty"`
	Sort     string            `json:"o,omitempty"`
	Desc     bool              `json:"d,omitempty"`
	PageSize int               `json:"n,omitempty"`
	Filters  map[string]string `json:"f,omitempty"`
}

// Cursor marks the last item of the previous page: its sort value and id.
type Cursor struct {
	Value string `json:"v"`
	ID    string `json:"i"`
}

// Fields describes a resource's searchable and sortable fields. Each returns the field's value as a
// string that orders correctly (timestamps in a fixed-width format).
type Fields[T any] struct {
	ID         func(T) string
	Searchable map[string]func(T) string
	// DefaultSort names the field used when the query gives none.
	DefaultSort string
}

// Validate checks the query against the resource's fields and fills defaults. It reports every
// bad parameter at once.
func (f Fields[T]) Validate(q *Query) error {
	var fe apperr.Fields
	if q.PageSize == 0 {
		q.PageSize = DefaultPageSize
	}
	if q.PageSize < 1 || q.PageSize > MaxPageSize {
		fe.Add("page_size", "out_of_range", "page_size must be between 1 and 500")
	}
	if q.Sort == "" {
		q.Sort = f.DefaultSort
	} else if _, ok := f.Searchable[q.Sort]; !ok {
		fe.Add("sort", "invalid", "sort must be one of: "+strings.Join(f.names(), ", "))
	}
	return fe.Err()
}

func (f Fields[T]) names() []string {
	var out []string
	for k := range f.Searchable {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Apply filters items by the search text, sorts them by the query's field (ties broken by id) and
// returns the page after the cursor, with the cursor of its last item when more items follow.
func Apply[T any](f Fields[T], items []T, q Query, after *Cursor) ([]T, *Cursor) {
	if s := strings.ToLower(strings.TrimSpace(q.Search)); s != "" {
		kept := items[:0:0]
		for _, it := range items {
			for _, get := range f.Searchable {
				if strings.Contains(strings.ToLower(get(it)), s) {
					kept = append(kept, it)
					break
				}
			}
		}
		items = kept
	} else {
		items = append(items[:0:0], items...)
	}
	key := f.Searchable[q.Sort]
	less := func(a, b Cursor) bool {
		if a.Value != b.Value {
			return (a.Value < b.Value) != q.Desc
		}
		if a.ID == b.ID {
			return false
		}
		return (a.ID < b.ID) != q.Desc
	}
	cur := func(it T) Cursor { return Cursor{Value: key(it), ID: f.ID(it)} }
	sort.SliceStable(items, func(i, j int) bool { return less(cur(items[i]), cur(items[j])) })
	start := 0
	if after != nil {
		start = sort.Search(len(items), func(i int) bool { return less(*after, cur(items[i])) })
	}
	end := start + q.PageSize
	if end >= len(items) {
		return items[start:], nil
	}
	c := cur(items[end-1])
	return items[start:end], &c
}

// TimeLayout formats timestamps as fixed-width UTC strings that sort in time order.
const TimeLayout = "2006-01-02T15:04:05.000000000Z"
