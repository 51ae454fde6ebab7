package emulator_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	streamtypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	kinesistypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/channelbilling/cms/local/emulator"
)

func TestMain(m *testing.M) { os.Exit(emulator.Main(m, nil)) }

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestServices(t *testing.T) {
	stack := emulator.ForTest(t)
	ctx := ctxFor(t)
	cfg, err := stack.AWSConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mode %s: DynamoDB %s, others %s, region %s", stack.Mode, stack.DynamoDBEndpoint, stack.AWSEndpoint, stack.Region)

	t.Run("DynamoDB", func(t *testing.T) {
		// A client made from cfg alone must reach DynamoDB Local, not moto
		// (which emulates DynamoDB too): AWSConfig routes it.
		db := dynamodb.NewFromConfig(cfg)
		const table = "emulator_test_items"
		out, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
			TableName:            aws.String(table),
			AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
			KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: ddbtypes.KeyTypeHash}},
			BillingMode:          ddbtypes.BillingModePayPerRequest,
			StreamSpecification: &ddbtypes.StreamSpecification{
				StreamEnabled:  aws.Bool(true),
				StreamViewType: ddbtypes.StreamViewTypeNewAndOldImages,
			},
		})
		if err != nil {
			t.Fatalf("CreateTable: %v", err)
		}
		if stack.Mode == emulator.ModeLocal && !strings.Contains(aws.ToString(out.TableDescription.TableArn), ":ddblocal:") {
			t.Errorf("table ARN %q: not created by DynamoDB Local", aws.ToString(out.TableDescription.TableArn))
		}
		if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{
			TableName: aws.String(table),
			Item: map[string]ddbtypes.AttributeValue{
				"pk":     &ddbtypes.AttributeValueMemberS{Value: "acct#1"},
				"amount": &ddbtypes.AttributeValueMemberN{Value: "1234"},
			},
		}); err != nil {
			t.Fatalf("PutItem: %v", err)
		}
		// The explicit option reaches the same server.
		explicit := dynamodb.NewFromConfig(cfg, stack.DynamoDBOptions())
		got, err := explicit.GetItem(ctx, &dynamodb.GetItemInput{
			TableName:      aws.String(table),
			Key:            map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "acct#1"}},
			ConsistentRead: aws.Bool(true),
		})
		if err != nil {
			t.Fatalf("GetItem: %v", err)
		}
		if n, ok := got.Item["amount"].(*ddbtypes.AttributeValueMemberN); !ok || n.Value != "1234" {
			t.Fatalf("GetItem: item %v", got.Item)
		}

		t.Run("Streams", func(t *testing.T) {
			desc, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
			if err != nil {
				t.Fatal(err)
			}
			arn := aws.ToString(desc.Table.LatestStreamArn)
			if arn == "" {
				t.Fatal("DescribeTable: no LatestStreamArn")
			}
			// cfg alone routes the Streams client too; the option makes it explicit.
			list, err := dynamodbstreams.NewFromConfig(cfg).ListStreams(ctx, &dynamodbstreams.ListStreamsInput{TableName: aws.String(table)})
			if err != nil {
				t.Fatalf("ListStreams: %v", err)
			}
			if len(list.Streams) != 1 || aws.ToString(list.Streams[0].StreamArn) != arn {
				t.Fatalf("ListStreams: %+v, want %s", list.Streams, arn)
			}
			streams := dynamodbstreams.NewFromConfig(cfg, stack.DynamoDBStreamsOptions())
			sd, err := streams.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{StreamArn: aws.String(arn)})
			if err != nil {
				t.Fatalf("DescribeStream: %v", err)
			}
			if len(sd.StreamDescription.Shards) == 0 {
				t.Fatal("DescribeStream: no shards")
			}
			it, err := streams.GetShardIterator(ctx, &dynamodbstreams.GetShardIteratorInput{
				StreamArn:         aws.String(arn),
				ShardId:           sd.StreamDescription.Shards[0].ShardId,
				ShardIteratorType: streamtypes.ShardIteratorTypeTrimHorizon,
			})
			if err != nil {
				t.Fatalf("GetShardIterator: %v", err)
			}
			recs, err := streams.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: it.ShardIterator})
			if err != nil {
				t.Fatalf("GetRecords: %v", err)
			}
			if len(recs.Records) != 1 || recs.Records[0].EventName != streamtypes.OperationTypeInsert {
				t.Fatalf("GetRecords: want one INSERT, got %+v", recs.Records)
			}
			img := recs.Records[0].Dynamodb.NewImage
			if v, ok := img["amount"].(*streamtypes.AttributeValueMemberN); !ok || v.Value != "1234" {
				t.Fatalf("GetRecords: new image %v", img)
			}
		})
	})

	t.Run("SQS", func(t *testing.T) {
		q := sqs.NewFromConfig(cfg)
		created, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("emulator-test-queue")})
		if err != nil {
			t.Fatalf("CreateQueue: %v", err)
		}
		if _, err := q.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: created.QueueUrl, MessageBody: aws.String("hello")}); err != nil {
			t.Fatalf("SendMessage: %v", err)
		}
		got, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: created.QueueUrl, WaitTimeSeconds: 1, MaxNumberOfMessages: 10})
		if err != nil {
			t.Fatalf("ReceiveMessage: %v", err)
		}
		if len(got.Messages) != 1 || aws.ToString(got.Messages[0].Body) != "hello" {
			t.Fatalf("ReceiveMessage: %+v", got.Messages)
		}
	})

	t.Run("S3", func(t *testing.T) {
		bucket := s3.NewFromConfig(cfg, func(o *s3.Options) {
			o.UsePathStyle = true
			o.DisableLogOutputChecksumValidationSkipped = true // moto sends no checksums
		})
		const name = "emulator-test-bucket"
		if _, err := bucket.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
			t.Fatalf("CreateBucket: %v", err)
		}
		if _, err := bucket.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(name), Key: aws.String("invoices/1.json"), Body: strings.NewReader(`{"total":1}`),
		}); err != nil {
			t.Fatalf("PutObject: %v", err)
		}
		obj, err := bucket.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(name), Key: aws.String("invoices/1.json")})
		if err != nil {
			t.Fatalf("GetObject: %v", err)
		}
		defer obj.Body.Close()
		body, _ := io.ReadAll(obj.Body)
		if !bytes.Equal(body, []byte(`{"total":1}`)) {
			t.Fatalf("GetObject: %q", body)
		}
	})

	t.Run("Kinesis", func(t *testing.T) {
		k := kinesis.NewFromConfig(cfg)
		name := aws.String("emulator-test-stream")
		if _, err := k.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: name, ShardCount: aws.Int32(1)}); err != nil {
			t.Fatalf("CreateStream: %v", err)
		}
		if err := kinesis.NewStreamExistsWaiter(k, func(o *kinesis.StreamExistsWaiterOptions) {
			o.MinDelay, o.MaxDelay = 100*time.Millisecond, time.Second
		}).Wait(ctx, &kinesis.DescribeStreamInput{StreamName: name}, 30*time.Second); err != nil {
			t.Fatalf("waiting for the stream: %v", err)
		}
		if _, err := k.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: name, PartitionKey: aws.String("acct#1"), Data: []byte("usage")}); err != nil {
			t.Fatalf("PutRecord: %v", err)
		}
		sum, err := k.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: name})
		if err != nil {
			t.Fatalf("DescribeStreamSummary: %v", err)
		}
		if sum.StreamDescriptionSummary.StreamStatus != kinesistypes.StreamStatusActive {
			t.Fatalf("stream status %s", sum.StreamDescriptionSummary.StreamStatus)
		}
	})

	t.Run("EventBridge", func(t *testing.T) {
		eb := eventbridge.NewFromConfig(cfg)
		bus, err := eb.CreateEventBus(ctx, &eventbridge.CreateEventBusInput{Name: aws.String("emulator-test-bus")})
		if err != nil {
			t.Fatalf("CreateEventBus: %v", err)
		}
		if aws.ToString(bus.EventBusArn) == "" {
			t.Fatal("CreateEventBus: no ARN")
		}
		put, err := eb.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{{
			EventBusName: aws.String("emulator-test-bus"),
			Source:       aws.String("cms.test"),
			DetailType:   aws.String("UsageRecorded"),
			Detail:       aws.String(`{"account":"1"}`),
		}}})
		if err != nil {
			t.Fatalf("PutEvents: %v", err)
		}
		if put.FailedEntryCount != 0 {
			t.Fatalf("PutEvents: %d failed", put.FailedEntryCount)
		}
	})
}

// TestCloseStopsEmulators starts a stack of its own and checks that Close
// leaves nothing listening.
func TestCloseStopsEmulators(t *testing.T) {
	if os.Getenv(emulator.EnvSkip) == "1" || testing.Short() {
		t.Skip("emulators skipped (-short or " + emulator.EnvSkip + "=1)")
	}
	if os.Getenv(emulator.EnvEndpointURL) != "" || os.Getenv(emulator.EnvUseAWS) != "" {
		t.Skip("no local emulators in this mode")
	}
	ctx := ctxFor(t)
	var log bytes.Buffer
	t0 := time.Now()
	stack, err := emulator.Start(ctx, emulator.Options{Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("started in %s:\n%s", time.Since(t0).Round(time.Millisecond), log.String())
	addrs := []string{hostPort(t, stack.DynamoDBEndpoint), hostPort(t, stack.AWSEndpoint)}
	for _, a := range addrs {
		if !answers(a) {
			t.Errorf("%s does not answer before Close", a)
		}
	}
	t1 := time.Now()
	if err := stack.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	t.Logf("closed in %s", time.Since(t1).Round(time.Millisecond))
	for _, a := range addrs {
		if answers(a) {
			t.Errorf("%s still answers after Close", a)
		}
	}
	if err := stack.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestEndpointMode(t *testing.T) {
	unsetenv(t, emulator.EnvUseAWS)
	t.Setenv(emulator.EnvEndpointURL, "http://127.0.0.1:4566")
	t.Setenv(emulator.EnvRegion, "eu-west-1")
	ctx := ctxFor(t)
	stack, err := emulator.Start(ctx, emulator.Options{Log: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer stack.Close()
	if stack.Mode != emulator.ModeEndpoint || stack.DynamoDBEndpoint != "http://127.0.0.1:4566" || stack.AWSEndpoint != stack.DynamoDBEndpoint {
		t.Fatalf("stack %+v", stack)
	}
	cfg, err := stack.AWSConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Region != "eu-west-1" || aws.ToString(cfg.BaseEndpoint) != "http://127.0.0.1:4566" {
		t.Fatalf("region %q, endpoint %q", cfg.Region, aws.ToString(cfg.BaseEndpoint))
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil || creds.AccessKeyID != emulator.TestAccessKeyID {
		t.Fatalf("credentials %v, %v", creds.AccessKeyID, err)
	}
	var o dynamodb.Options
	stack.DynamoDBOptions()(&o)
	if aws.ToString(o.BaseEndpoint) != "http://127.0.0.1:4566" {
		t.Fatalf("DynamoDBOptions: %q", aws.ToString(o.BaseEndpoint))
	}
}

func TestAWSMode(t *testing.T) {
	t.Setenv(emulator.EnvUseAWS, "1")
	unsetenv(t, emulator.EnvEndpointURL)
	t.Setenv(emulator.EnvRegion, "eu-central-1")
	ctx := ctxFor(t)
	stack, err := emulator.Start(ctx, emulator.Options{Log: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer stack.Close()
	if stack.Mode != emulator.ModeAWS || stack.DynamoDBEndpoint != "" || stack.AWSEndpoint != "" {
		t.Fatalf("stack %+v", stack)
	}
	cfg, err := stack.AWSConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.BaseEndpoint != nil || cfg.Region != "eu-central-1" {
		t.Fatalf("endpoint %v, region %q", cfg.BaseEndpoint, cfg.Region)
	}
	var o dynamodb.Options
	stack.DynamoDBOptions()(&o)
	if o.BaseEndpoint != nil {
		t.Fatalf("DynamoDBOptions set an endpoint in AWS mode: %q", *o.BaseEndpoint)
	}
}

func hostPort(t *testing.T, endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

func answers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// unsetenv unsets key for the test and restores it afterwards.
func unsetenv(t *testing.T, key string) {
	t.Setenv(key, "") // registers the restore
	os.Unsetenv(key)
}
