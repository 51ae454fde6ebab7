package feeders_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/channelbilling/cms/local/feeders"
)

func TestLambdaMessage(t *testing.T) {
	m := sqstypes.Message{MessageId: aws.String("m1"), ReceiptHandle: aws.String("rh"), Body: aws.String(`{"a":1}`), MD5OfBody: aws.String("md5"),
		Attributes:        map[string]string{"ApproximateReceiveCount": "2", "SentTimestamp": "1"},
		MessageAttributes: map[string]sqstypes.MessageAttributeValue{"k": {DataType: aws.String("String"), StringValue: aws.String("v")}}}
	got := feeders.LambdaMessage(m, "arn:aws:sqs:us-east-1:000000000000:q", "us-east-1")
	// The JSON Lambda would deliver: the field names of events.SQSMessage.
	b, _ := json.Marshal(got)
	var back map[string]any
	_ = json.Unmarshal(b, &back)
	for _, k := range []string{"messageId", "receiptHandle", "body", "md5OfBody", "attributes", "messageAttributes", "eventSource", "eventSourceARN", "awsRegion"} {
		if _, ok := back[k]; !ok {
			t.Errorf("no %s in %s", k, b)
		}
	}
	if got.EventSource != "aws:sqs" || got.Attributes["ApproximateReceiveCount"] != "2" || *got.MessageAttributes["k"].StringValue != "v" || got.MessageAttributes["k"].DataType != "String" {
		t.Fatalf("%+v", got)
	}
}

func TestLambdaRecord(t *testing.T) {
	at := time.Unix(1795369500, 0)
	got := feeders.LambdaRecord(ktypes.Record{Data: []byte("x"), PartitionKey: aws.String("p"), SequenceNumber: aws.String("49590"), ApproximateArrivalTimestamp: &at},
		"shardId-000000000000", "arn:aws:kinesis:us-east-1:000000000000:stream/s", "us-east-1")
	if got.EventID != "shardId-000000000000:49590" || got.EventName != "aws:kinesis:record" || got.EventSource != "aws:kinesis" ||
		string(got.Kinesis.Data) != "x" || got.Kinesis.SequenceNumber != "49590" || !got.Kinesis.ApproximateArrivalTimestamp.Equal(at) {
		t.Fatalf("%+v", got)
	}
}

func TestS3Notifications(t *testing.T) {
	var got []string
	h := feeders.S3Notifications(func(_ context.Context, ev events.S3Event) error {
		for _, r := range ev.Records {
			got = append(got, r.S3.Object.Key)
			if r.S3.Object.Key == "usage/fail.csv" {
				return errors.New("transient")
			}
		}
		return nil
	})
	body := func(key string) string {
		return `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"` + key + `"}}}]}`
	}
	res, err := h(context.Background(), events.SQSEvent{Records: []events.SQSMessage{
		{MessageId: "1", Body: `{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}`},
		{MessageId: "2", Body: body("usage/a.csv")},
		{MessageId: "3", Body: body("usage/fail.csv")},
	}})
	if err != nil || len(res.BatchItemFailures) != 1 || res.BatchItemFailures[0].ItemIdentifier != "3" {
		t.Fatalf("%+v %v", res, err)
	}
	if len(got) != 2 || got[0] != "usage/a.csv" {
		t.Fatalf("handled %v", got)
	}
}
