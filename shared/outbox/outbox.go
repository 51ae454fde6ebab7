// Package outbox defines the domain events that are written in the same transaction as the change
// that causes them (SPEC 13). A publisher later reads them from the table's stream.
package outbox

import (
	"encoding/json"
	"time"

	"github.com/channelbilling/cms/shared/ids"
)

// Event types.
const (
	UserInvited = "user.invited"
)

// Event is one domain event. ID lets consumers drop duplicates; Path is the hierarchy path of the
// entity the event concerns, so webhooks can deliver it to that subtree's owners only.
type Event struct {
	ID     string          `json:"id"`
	Type   string          `json:"type"`
	Time   time.Time       `json:"time"`
	Path   string          `json:"path"`
	Detail json.RawMessage `json:"detail"`
}

// New returns an event of type typ about the entity at path, with detail marshalled to JSON.
// It fails only when detail cannot be marshalled.
func New(typ, path string, now time.Time, detail any) (Event, error) {
	b, err := json.Marshal(detail)
	if err != nil {
		return Event{}, err
	}
	return Event{ID: ids.New("evt"), Type: typ, Time: now.UTC(), Path: path, Detail: b}, nil
}
