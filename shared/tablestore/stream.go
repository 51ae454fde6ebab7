package tablestore

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/channelbilling/cms/shared/outbox"
)

// Layout of an outbox event item (see eventRecord); the stream reader below depends on it.
const (
	eventPKPrefix = "EVENT#"
	eventSK       = "EVENT"
	eventKind     = "event"
)

// OutboxEvent reads the outbox event held by an item image of the table's stream (a record's
// NewImage, as Lambda delivers it). ok is false when the image is not an outbox event item
// (every other kind of item). When the image is an outbox item that cannot be read (a missing
// or malformed attribute), ok is true and err names every bad attribute, never its value; the
// returned event then carries as much as could be read (its ID when the key is sound), for logs.
func OutboxEvent(image map[string]events.DynamoDBAttributeValue) (e outbox.Event, ok bool, err error) {
	if kind, _ := imageString(image, "Kind"); kind != eventKind {
		return outbox.Event{}, false, nil
	}
	var errs []error
	pk, _ := imageString(image, "PK")
	if id, found := strings.CutPrefix(pk, eventPKPrefix); found && id != "" {
		e.ID = id
	} else {
		errs = append(errs, errors.New("attribute PK: not EVENT#<id>"))
	}
	if sk, _ := imageString(image, "SK"); sk != eventSK {
		errs = append(errs, errors.New("attribute SK: not EVENT"))
	}
	if e.Type, _ = imageString(image, "Type"); e.Type == "" {
		errs = append(errs, errors.New("attribute Type: missing"))
	}
	if tm, found := imageString(image, "Time"); !found {
		errs = append(errs, errors.New("attribute Time: missing"))
	} else if e.Time, err = time.Parse(time.RFC3339Nano, tm); err != nil {
		errs = append(errs, errors.New("attribute Time: not RFC 3339"))
	}
	var found bool
	if e.Path, found = imageString(image, "Path"); !found {
		errs = append(errs, errors.New("attribute Path: missing"))
	}
	if d, found := imageString(image, "Detail"); !found {
		errs = append(errs, errors.New("attribute Detail: missing"))
	} else if !json.Valid([]byte(d)) {
		errs = append(errs, errors.New("attribute Detail: not JSON"))
	} else {
		e.Detail = json.RawMessage(d)
	}
	if err := errors.Join(errs...); err != nil {
		return e, true, fmt.Errorf("outbox item: %w", err)
	}
	return e, true, nil
}

// imageString returns a string attribute of a stream image; found is false when the attribute
// is absent or not a string (the accessors of events.DynamoDBAttributeValue panic on a type
// mismatch).
func imageString(image map[string]events.DynamoDBAttributeValue, name string) (string, bool) {
	av, found := image[name]
	if !found || av.DataType() != events.DataTypeString {
		return "", false
	}
	return av.String(), true
}

// OutboxImage returns the stream image (NewImage) of the item an outbox event is stored as: the
// inverse of OutboxEvent, for tests and tools that build stream records.
func OutboxImage(e outbox.Event) map[string]events.DynamoDBAttributeValue {
	it := eventRecord(e)
	return map[string]events.DynamoDBAttributeValue{
		"PK": events.NewStringAttribute(it.PK), "SK": events.NewStringAttribute(it.SK),
		"Kind": events.NewStringAttribute(it.Kind), "Type": events.NewStringAttribute(it.Type),
		"Time": events.NewStringAttribute(it.Time), "Path": events.NewStringAttribute(it.Path),
		"Detail": events.NewStringAttribute(it.Detail), TTLAttr: events.NewNumberAttribute(itoa(it.TTL)),
	}
}
