package tablestore

import (
	"github.com/guregu/dynamo/v2"

	"github.com/channelbilling/cms/shared/outbox"
)

// EventItem is the item eventPut writes for e, marshalled the way the table stores it.
func EventItem(e outbox.Event) (dynamo.Item, error) { return dynamo.MarshalItem(eventRecord(e)) }
