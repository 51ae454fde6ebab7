package main

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambdaeventsources"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsscheduler"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/jsii-runtime-go"
)

// The usage file-drop layout (shared/usagelambda: UsagePrefix, ReportPrefix + key + ".json").
const (
	usageFilePrefix   = "usage/"
	usageReportPrefix = "reports/" + usageFilePrefix
	exportsPrefix     = "exports/"
)

// allow adds one statement to a function's role.
func allow(fn awslambda.Function, actions []string, resources ...*string) {
	fn.AddToRolePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions: jsii.Strings(actions...), Resources: &resources,
	}))
}

// sendTo lets a function send to a queue: sqs:SendMessage only (it covers SendMessageBatch; the
// queue URL is in the environment, so no GetQueueUrl).
func sendTo(fn awslambda.Function, q awssqs.IQueue) {
	allow(fn, []string{"sqs:SendMessage"}, q.QueueArn())
}

// wireUsageQueue feeds the usage queue to usagequeue (partial batch failures; a message failing
// 5 times moves to the usage DLQ by the queue's redrive policy) and lets it send invalid records
// to the usage DLQ.
func wireUsageQueue(s *CmsStack, fn awslambda.Function) {
	fn.AddEventSource(awslambdaeventsources.NewSqsEventSource(s.UsageQueue, &awslambdaeventsources.SqsEventSourceProps{
		BatchSize:               jsii.Number(10),
		MaxBatchingWindow:       awscdk.Duration_Seconds(jsii.Number(1)),
		ReportBatchItemFailures: jsii.Bool(true),
	}))
	sendTo(fn, s.UsageDLQ)
}

// wireUsageStream feeds the usage stream to usagestream: partial batch failures, bisect on
// error, 10 retries, then the batch's description to the usage DLQ (where the consumer also
// sends invalid records).
func wireUsageStream(s *CmsStack, fn awslambda.Function) {
	fn.AddEventSource(awslambdaeventsources.NewKinesisEventSource(s.Stream, &awslambdaeventsources.KinesisEventSourceProps{
		StartingPosition:        awslambda.StartingPosition_TRIM_HORIZON,
		BatchSize:               jsii.Number(100),
		MaxBatchingWindow:       awscdk.Duration_Seconds(jsii.Number(1)),
		ReportBatchItemFailures: jsii.Bool(true),
		BisectBatchOnError:      jsii.Bool(true),
		RetryAttempts:           jsii.Number(10),
		OnFailure:               awslambdaeventsources.NewSqsDlq(s.UsageDLQ),
	}))
	sendTo(fn, s.UsageDLQ)
}

// wireUsageFiles has the usage bucket notify usagefiles of objects created under usage/, and
// lets it read those and write their reports under reports/usage/.
//
// Not addEventNotification: its custom resource's role has s3:PutBucketNotification on "*" and
// a managed policy. The notification is the bucket's own NotificationConfiguration; the invoke
// permission names the bucket by its fixed name (a reference would make a cycle: the bucket
// depends on the permission, which S3 checks when the configuration is set).
func wireUsageFiles(s *CmsStack, fn awslambda.Function) {
	bucketArn := jsii.String("arn:" + *awscdk.Aws_PARTITION() + ":s3:::" + *s.UsageBucketName)
	perm := awslambda.NewCfnPermission(s.Stack, jsii.String("UsageBucketInvokesUsagefiles"), &awslambda.CfnPermissionProps{
		Action:        jsii.String("lambda:InvokeFunction"),
		FunctionName:  fn.FunctionArn(),
		Principal:     jsii.String("s3.amazonaws.com"),
		SourceArn:     bucketArn,
		SourceAccount: awscdk.Aws_ACCOUNT_ID(),
	})
	cfn := s.Usage.Node().DefaultChild().(awss3.CfnBucket)
	cfn.SetNotificationConfiguration(&awss3.CfnBucket_NotificationConfigurationProperty{
		LambdaConfigurations: []any{&awss3.CfnBucket_LambdaConfigurationProperty{
			Event:    jsii.String("s3:ObjectCreated:*"),
			Function: fn.FunctionArn(),
			Filter: &awss3.CfnBucket_NotificationFilterProperty{S3Key: &awss3.CfnBucket_S3KeyFilterProperty{
				Rules: []any{&awss3.CfnBucket_FilterRuleProperty{Name: jsii.String("prefix"), Value: jsii.String(usageFilePrefix)}},
			}},
		}},
	})
	cfn.Node().AddDependency(perm)
	allow(fn, []string{"s3:GetObject"}, jsii.String(*bucketArn+"/"+usageFilePrefix+"*"))
	allow(fn, []string{"s3:PutObject"}, jsii.String(*bucketArn+"/"+usageReportPrefix+"*"))
}

// newBillingQueue defines the billing work queue and its dead-letter queue: a message failing 5
// times (a tenant whose invoice cannot be computed) moves to the DLQ, alarmed on.
func (s *CmsStack) newBillingQueue() {
	s.BillingDLQ = s.deadLetterQueue("BillingDeadLetters", "Billing messages failed 5 times (a run stays running): fix the cause, then start the run again or redrive.")
	s.BillingQueue = awssqs.NewQueue(s.Stack, jsii.String("BillingQueue"), &awssqs.QueueProps{
		VisibilityTimeout: awscdk.Duration_Seconds(jsii.Number(6 * BillingWorkerTimeout.Seconds())),
		RetentionPeriod:   awscdk.Duration_Days(jsii.Number(4)),
		// SSE-SQS: EventBridge Scheduler can send to it (no KMS key policy to maintain).
		Encryption:      awssqs.QueueEncryption_SQS_MANAGED,
		EnforceSSL:      jsii.Bool(true),
		DeadLetterQueue: &awssqs.DeadLetterQueue{Queue: s.BillingDLQ, MaxReceiveCount: jsii.Number(5)},
	})
}

// newBillingSchedule starts the monthly run: an EventBridge Scheduler schedule sends
// {"kind":"start"} to the billing queue at 00:05 UTC on the 1st, with a role that may send to
// that queue only.
func (s *CmsStack) newBillingSchedule() {
	s.BillingScheduleRole = awsiam.NewRole(s.Stack, jsii.String("BillingScheduleRole"), &awsiam.RoleProps{
		AssumedBy: awsiam.NewServicePrincipal(jsii.String("scheduler.amazonaws.com"), &awsiam.ServicePrincipalOpts{
			Conditions: &map[string]any{"StringEquals": map[string]any{"aws:SourceAccount": awscdk.Aws_ACCOUNT_ID()}},
		}),
		Description: jsii.String("EventBridge Scheduler: sends the monthly billing start message"),
	})
	s.BillingScheduleRole.AddToPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions: jsii.Strings("sqs:SendMessage"), Resources: jsii.Strings(*s.BillingQueue.QueueArn()),
	}))
	s.BillingSchedule = awsscheduler.NewCfnSchedule(s.Stack, jsii.String("BillingSchedule"), &awsscheduler.CfnScheduleProps{
		Description:                jsii.String("Monthly billing run of the month that ended (billing worker, kind start)"),
		ScheduleExpression:         jsii.String(BillingSchedule),
		ScheduleExpressionTimezone: jsii.String("UTC"),
		FlexibleTimeWindow:         &awsscheduler.CfnSchedule_FlexibleTimeWindowProperty{Mode: jsii.String("OFF")},
		State:                      jsii.String("ENABLED"),
		Target: &awsscheduler.CfnSchedule_TargetProperty{
			Arn:     s.BillingQueue.QueueArn(),
			RoleArn: s.BillingScheduleRole.RoleArn(),
			Input:   jsii.String(BillingStartMessage),
			// A failed delivery is retried for up to a day.
			RetryPolicy: &awsscheduler.CfnSchedule_RetryPolicyProperty{
				MaximumEventAgeInSeconds: jsii.Number(86400), MaximumRetryAttempts: jsii.Number(185),
			},
		},
	})
	// The role's policy must exist before the first delivery is attempted.
	if pol := s.BillingScheduleRole.Node().TryFindChild(jsii.String("DefaultPolicy")); pol != nil {
		s.BillingSchedule.Node().AddDependency(pol)
	}
}

// wireBillingAPI lets the billing function queue a run's fan-out (POST /billing/runs).
func wireBillingAPI(s *CmsStack, fn awslambda.Function) {
	sendTo(fn, s.BillingQueue)
}

// wireBillingWorker feeds the billing queue to the worker (10 messages per batch, partial batch
// failures) and lets it queue more work (fan-out, tenants, close) and write the finance exports.
func wireBillingWorker(s *CmsStack, fn awslambda.Function) {
	fn.AddEventSource(awslambdaeventsources.NewSqsEventSource(s.BillingQueue, &awslambdaeventsources.SqsEventSourceProps{
		BatchSize:               jsii.Number(10),
		ReportBatchItemFailures: jsii.Bool(true),
	}))
	sendTo(fn, s.BillingQueue)
	// A large export is a multipart upload; a failed one is aborted (the bucket's lifecycle rule
	// removes what an abort misses).
	allow(fn, []string{"s3:PutObject", "s3:AbortMultipartUpload"}, jsii.String(*s.Exports.BucketArn()+"/"+exportsPrefix+"*"))
}
