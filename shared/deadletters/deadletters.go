// Package deadletters is the usage dead-letter queue (SPEC 10: a queue or stream record that
// cannot be processed lands there with its reason): the letter format, and its SQS adapter that
// sends letters, lists them and replays them into the usage queue.
//
// Two kinds of message reach the queue (CMS_USAGE_DLQ): letters, written by the usage consumers
// for invalid records (a JSON Letter, with message attributes "reason", "field" and "channel"
// for filtering in the console), and messages of the usage queue that SQS moved there itself
// after maxReceiveCount failed receives (the original body, no letter): those failed for a
// transient reason that outlasted the retries. Replay sends either back to the usage queue, so
// that it goes through the one rating path again; records already counted are duplicates there.
package deadletters

import (
	"encoding/json"
	"time"

	"github.com/channelbilling/cms/shared/apperr"
)

// Letter is one dead-lettered record: why, where it came from, and the record as delivered.
type Letter struct {
	// Reason lists every problem of the record, each naming its field when it has one.
	Reason []apperr.FieldError `json:"reason"`
	Source Source              `json:"source"`
	// Record is the record as it was delivered: its JSON when it was JSON, otherwise a JSON
	// string holding the delivered text.
	Record json.RawMessage `json:"record"`
	At     time.Time       `json:"at"`
}

// Source says where a dead-lettered record came from.
type Source struct {
	// Channel is "queue" or "stream".
	Channel string `json:"channel"`
	// Ref locates the record in its delivery ("message <id> records[3]", "sequence <n>").
	Ref            string `json:"ref"`
	MessageID      string `json:"messageId,omitempty"`
	SequenceNumber string `json:"sequenceNumber,omitempty"`
	PartitionKey   string `json:"partitionKey,omitempty"`
	EventSourceARN string `json:"eventSourceArn,omitempty"`
}

// RecordBody returns raw as a letter's Record: itself when it is JSON, otherwise a JSON string
// of it.
func RecordBody(raw []byte) json.RawMessage {
	if json.Valid(raw) {
		return append(json.RawMessage(nil), raw...)
	}
	b, _ := json.Marshal(string(raw)) // a string always marshals
	return b
}

// ReplayBody returns what replaying a letter's record sends to the usage queue: the record's
// JSON, or the delivered text when the record was not JSON.
func (l Letter) ReplayBody() string {
	var s string
	if len(l.Record) > 0 && l.Record[0] == '"' && json.Unmarshal(l.Record, &s) == nil {
		return s
	}
	return string(l.Record)
}

// ReasonText returns the reasons on one line: "quantity: quantity must not be negative; ...".
func (l Letter) ReasonText() string {
	out := ""
	for i, r := range l.Reason {
		if i > 0 {
			out += "; "
		}
		if r.Field != "" {
			out += r.Field + ": "
		}
		out += r.Message
	}
	return out
}
