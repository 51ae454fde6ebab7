package deadletters

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// API is the part of the SQS client the adapter uses (*sqs.Client).
type API interface {
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
	GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
}

// QueueURL returns the URL of a queue given by URL or by name (what CMS_USAGE_DLQ and
// CMS_USAGE_QUEUE hold). It fails when the queue does not exist.
func QueueURL(ctx context.Context, c API, nameOrURL string) (string, error) {
	if strings.HasPrefix(nameOrURL, "https://") || strings.HasPrefix(nameOrURL, "http://") {
		return nameOrURL, nil
	}
	out, err := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(nameOrURL)})
	if err != nil {
		return "", fmt.Errorf("queue %s: %w", nameOrURL, err)
	}
	return aws.ToString(out.QueueUrl), nil
}

// Queue is the dead-letter queue on SQS.
type Queue struct {
	Client API
	URL    string
}

func attr(v string) types.MessageAttributeValue {
	if v == "" {
		v = "-"
	}
	return types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
}

// Send sends the letters, ten per request. It fails when any letter could not be sent (the
// caller then reports its delivery as failed, so that it is retried, and the retry sends every
// letter of it again: letters are at least once, and replaying a letter twice counts its record
// at most once).
func (q *Queue) Send(ctx context.Context, letters []Letter) error {
	var errs []error
	for start := 0; start < len(letters); start += 10 {
		part := letters[start:min(len(letters), start+10)]
		in := &sqs.SendMessageBatchInput{QueueUrl: aws.String(q.URL)}
		for i, l := range part {
			body, err := json.Marshal(l)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			reason, field := "invalid", ""
			if len(l.Reason) > 0 {
				reason, field = l.Reason[0].Code, l.Reason[0].Field
			}
			in.Entries = append(in.Entries, types.SendMessageBatchRequestEntry{
				Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(string(body)),
				MessageAttributes: map[string]types.MessageAttributeValue{"reason": attr(reason), "field": attr(field), "channel": attr(l.Source.Channel)},
			})
		}
		if len(in.Entries) == 0 {
			continue
		}
		out, err := q.Client.SendMessageBatch(ctx, in)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range out.Failed {
			errs = append(errs, fmt.Errorf("dead letter %s: %s", aws.ToString(f.Id), aws.ToString(f.Code)))
		}
	}
	return errors.Join(errs...)
}

// Message is a message of the dead-letter queue, read back.
type Message struct {
	ID            string
	ReceiptHandle string
	Body          string
	// Letter is the decoded letter; nil for the other kinds.
	Letter *Letter
	// StreamBatch is set for the record Lambda's Kinesis event source writes when a batch still
	// fails after its retries (its on-failure destination): it names the records, which stay in
	// the stream for its retention period, and does not hold them.
	StreamBatch *StreamBatch
	// ReceiveCount is how often the message was received from this queue.
	ReceiveCount int
}

// StreamBatch locates a stream batch that failed after its retries (Lambda's KinesisBatchInfo).
type StreamBatch struct {
	ShardID             string `json:"shardId"`
	StartSequenceNumber string `json:"startSequenceNumber"`
	EndSequenceNumber   string `json:"endSequenceNumber"`
	BatchSize           int    `json:"batchSize"`
	StreamARN           string `json:"streamArn"`
}

// Reason returns the letter's reasons, or what happened to a message of another kind.
func (m Message) Reason() string {
	switch {
	case m.Letter != nil:
		return m.Letter.ReasonText()
	case m.StreamBatch != nil:
		b := m.StreamBatch
		return fmt.Sprintf("a stream batch of %d records still failing after its retries: %s, sequence numbers %s to %s",
			b.BatchSize, b.ShardID, b.StartSequenceNumber, b.EndSequenceNumber)
	}
	return "moved by SQS after too many failed receives of the usage queue (a transient failure that outlasted the retries)"
}

// ReplayBody returns what replaying the message sends to the usage queue.
func (m Message) ReplayBody() string {
	if m.Letter != nil {
		return m.Letter.ReplayBody()
	}
	return m.Body
}

// Receive reads up to max messages (at most 10) and hides them for visibility seconds (at
// least 1: SQS's API takes 0 for "the queue's default"); wait is the long-poll wait in seconds.
func (q *Queue) Receive(ctx context.Context, max int32, visibility int32, wait int32) ([]Message, error) {
	out, err := q.Client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(q.URL), MaxNumberOfMessages: min(max, 10), VisibilityTimeout: max32(visibility, 1), WaitTimeSeconds: wait,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount},
		MessageAttributeNames:       []string{"All"},
	})
	if err != nil {
		return nil, err
	}
	msgs := make([]Message, 0, len(out.Messages))
	for _, m := range out.Messages {
		msg := Message{ID: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle), Body: aws.ToString(m.Body)}
		msg.ReceiveCount, _ = strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
		var l Letter
		var onFailure struct {
			KinesisBatchInfo *StreamBatch `json:"KinesisBatchInfo"`
		}
		switch {
		case json.Unmarshal([]byte(msg.Body), &l) == nil && l.Source.Channel != "" && len(l.Record) > 0:
			msg.Letter = &l
		case json.Unmarshal([]byte(msg.Body), &onFailure) == nil && onFailure.KinesisBatchInfo != nil:
			msg.StreamBatch = onFailure.KinesisBatchInfo
		}
		msgs = append(msgs, msg)
	}
	return msgs, nil
}

func max32(a, b int32) int32 {
	if a > b {
		return a
	}
	return b
}

// All reads every visible message, hiding each for visibility seconds so that none is read
// twice: release them (Release) or act on them (Replay, Delete) before then. It stops when a
// receive finds nothing more.
func (q *Queue) All(ctx context.Context, visibility int32) ([]Message, error) {
	var out []Message
	seen := map[string]bool{}
	for {
		msgs, err := q.Receive(ctx, 10, visibility, 1)
		if err != nil {
			return out, err
		}
		fresh := 0
		for _, m := range msgs {
			if !seen[m.ID] {
				seen[m.ID] = true
				out = append(out, m)
				fresh++
			}
		}
		if fresh == 0 {
			return out, nil
		}
	}
}

// Release makes a message read with Receive visible again at once.
func (q *Queue) Release(ctx context.Context, m Message) error {
	_, err := q.Client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(q.URL),
		ReceiptHandle: aws.String(m.ReceiptHandle), VisibilityTimeout: 0})
	return err
}

// Delete removes a message read with Receive.
func (q *Queue) Delete(ctx context.Context, m Message) error {
	_, err := q.Client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(q.URL), ReceiptHandle: aws.String(m.ReceiptHandle)})
	return err
}

// ErrStreamBatch is returned by Replay for a stream batch description: its records must be
// read from the stream (package streambatch).
var ErrStreamBatch = errors.New("a stream batch description: replay its records from the stream")

// Replay sends the message's record (or original message) to the usage queue at usageURL and
// then deletes it from the dead-letter queue. A record that is still invalid comes back as a
// new letter; one counted meanwhile is a duplicate. ErrStreamBatch for a stream batch
// description.
func (q *Queue) Replay(ctx context.Context, usageURL string, m Message) error {
	if m.StreamBatch != nil {
		return ErrStreamBatch
	}
	attrs := map[string]types.MessageAttributeValue{"replayedFrom": attr(m.ID)}
	if _, err := q.Client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(usageURL), MessageBody: aws.String(m.ReplayBody()),
		MessageAttributes: attrs}); err != nil {
		return fmt.Errorf("send to the usage queue: %w", err)
	}
	if err := q.Delete(ctx, m); err != nil {
		return fmt.Errorf("delete from the dead-letter queue: %w", err)
	}
	return nil
}
