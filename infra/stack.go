package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsapigateway"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatchactions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsdynamodb"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskinesis"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambdaeventsources"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsscheduler"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssnssubscriptions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/channelbilling/cms/shared/app"
	"github.com/channelbilling/cms/shared/httpapi"
	"github.com/channelbilling/cms/shared/tablestore"
)

// StageName is the API Gateway stage: the API answers at https://<id>.execute-api.<region>.amazonaws.com/prod/api/v1/...
const StageName = "prod"

// Table item actions. TransactWriteItems has no IAM action of its own: each item of a
// transaction is authorised as the Put/Update/Delete/ConditionCheck it contains, with its own
// partition key checked against dynamodb:LeadingKeys.
const (
	actGet       = "dynamodb:GetItem"
	actBatchGet  = "dynamodb:BatchGetItem"
	actPut       = "dynamodb:PutItem"
	actUpdate    = "dynamodb:UpdateItem"
	actDelete    = "dynamodb:DeleteItem"
	actCondCheck = "dynamodb:ConditionCheckItem"
	actQuery     = "dynamodb:Query"
	// actBatchWrite is granted to the billing worker only: the commission run writes its lines
	// 25 per BatchWriteItem. It allows nothing the worker's Put and Delete do not already allow.
	actBatchWrite = "dynamodb:BatchWriteItem"
)

// TableAccess is what one function may do on the table. Reads (GetItem, BatchGetItem, Query on
// the table and GSI1) are not narrowed by key. Writes are: each write action is allowed only on
// items whose partition key matches one of WriteKeys, and ConditionCheckItem only on CheckKeys
// (IAM's dynamodb:LeadingKeys, ForAllValues:StringLike), so that a function can write only the
// kinds of items its code writes (docs/deploy.md lists them per function).
type TableAccess struct {
	Read   bool     // GetItem and BatchGetItem on the table
	Query  bool     // dynamodb:Query on the table and on GSI1
	Writes []string // write actions: PutItem, UpdateItem, DeleteItem, BatchWriteItem
	// WriteKeys are the partition key patterns (StringLike: "ENT#*") the writes may touch.
	WriteKeys []string
	// CheckKeys are the partition key patterns of the items the function's transactions
	// condition on without writing them (ConditionCheckItem); empty: no ConditionCheckItem.
	CheckKeys []string
}

// Partition key patterns of the table's items (docs/data-model.md), as the tablestore package
// writes them.
const (
	// keySecret: the generated secrets (signing keys, pagination key, usage key secret), read
	// at start-up and created on first use by every function that builds app.New.
	keySecret = "SECRET#*"
	// keyIdem: Idempotency-Key records of POST routes (claimed, completed, released).
	keyIdem = "IDEM#*"
	// keyEvent: outbox events, written in the transaction of the change that causes them.
	keyEvent = "EVENT#*"
	keyEnt   = "ENT#*"
	// keyBillingID reserves a billingId (BILLINGID#<billingId>).
	keyBillingID = "BILLINGID#*"
	keyUser      = "USER#*"
	keyEmail     = "EMAIL#*"
	keyInvite    = "INVITE#*"
	keyToken     = "RTOKEN#*"
	keyFamily    = "RFAMILY#*"
	keyLoginFail = "LOGINFAIL#*"
	keyIdent     = "IDENT#*"
	keySKU       = "SKU#*"
	keySKUCode   = "SKUCODE#*"
	keyPlan      = "PLAN#*"
	keyPlanCode  = "PLANCODE#*"
	keyOverride  = "OVR#*"
	// keySub: a subscription and its history (SK HIST#...).
	keySub = "SUB#*"
	// The usage store: records (claims), aggregate logs, the period registry, late-usage flags.
	keyUsageRec  = "UREC#*"
	keyUsageAgg  = "UAGG#*"
	keyUsageReg  = "UREG#*"
	keyUsageLate = "ULATE#*"
	// The billing store: runs (with their shards and failures), per-run tenant marks, invoices
	// and their per-tenant references, number sequences, ledgers, commissions.
	keyRun     = "RUN#*"
	keyRunP    = "RUNP#*"  // a run's entry in its period's index (CreateRun)
	keyClose   = "CLOSE#*" // a period's close claim (the worker's close step)
	keyRunT    = "RUNT#*"
	keyInv     = "INV#*"
	keyTInv    = "TINV#*"
	keyInvSeq  = "INVSEQ#*"
	keyLedger  = "BILLED#*"
	keyComm    = "COMM#*"
	keyUsageKS = "SECRET#usage-key" // the usagekeys function's one secret (usagekeys.SecretName)
)

// Access profiles, from what the code of each function writes (docs/deploy.md has the list and
// the store methods behind it). Every function built on app.New reads the generated secrets at
// start-up and may create them (conditional PutItem on SECRET#); every function with POST
// routes claims, completes and releases Idempotency-Keys (PutItem, DeleteItem on IDEM#).
var (
	rw  = []string{actPut, actUpdate, actDelete}
	rwu = []string{actPut, actUpdate}
	// accessAuthorizer: get the caller's user, BatchGet the entities on its scope path. No write:
	// a valid token implies the secrets exist (the auth function created them to sign it).
	accessAuthorizer = TableAccess{Read: true}
	// accessSecretsOnly: the docs function writes nothing but the start-up secrets.
	accessSecretsOnly = TableAccess{Read: true, Writes: []string{actPut}, WriteKeys: []string{keySecret}}
	// accessBillingRead: invoices and commissions only read (GSI1 by period); PutItem: the
	// start-up secrets, nothing else.
	accessBillingRead = TableAccess{Read: true, Query: true, Writes: []string{actPut}, WriteKeys: []string{keySecret}}
	// accessBootstrap: the platform entity (put) and the first admin: user, e-mail, the scope's
	// user counter (one transaction).
	accessBootstrap = TableAccess{Read: true, Writes: rwu, WriteKeys: []string{keySecret, keyEnt, keyUser, keyEmail}}
	// accessAuth: refresh tokens and their families, login-failure counters, federated links,
	// accepted invitations (invite deleted, user put), the user's last login.
	accessAuth = TableAccess{Read: true, Writes: rw, WriteKeys: []string{keySecret, keyIdem, keyUser, keyInvite, keyToken, keyFamily, keyLoginFail, keyIdent}}
	// accessHierarchy: distributors and partners: entities (and the parent's counters) with their
	// billingId reservations.
	accessHierarchy = TableAccess{Read: true, Query: true, Writes: rw, WriteKeys: []string{keySecret, keyIdem, keyEnt, keyBillingID}}
	// accessTenants: as accessHierarchy, and deleting a tenant first settles its subscriptions'
	// due cancellations (subscription, history, the tenant's counter, customer.cancelled).
	accessTenants = TableAccess{Read: true, Query: true, Writes: rw, WriteKeys: []string{keySecret, keyIdem, keyEnt, keyBillingID, keySub, keyEvent}}
	// accessUsers: users with their e-mail reservation, the scope's user counter, invitations
	// with their user.invited event.
	accessUsers = TableAccess{Read: true, Query: true, Writes: rw, WriteKeys: []string{keySecret, keyIdem, keyUser, keyEmail, keyInvite, keyEnt, keyEvent}}
	// accessRoles: a role change rewrites the user and moves it between scope counters; no POST.
	accessRoles = TableAccess{Read: true, Query: true, Writes: rwu, WriteKeys: []string{keySecret, keyUser, keyEnt}}
	// accessPricing: SKUs with their code reservations.
	accessPricing = TableAccess{Read: true, Query: true, Writes: rw, WriteKeys: []string{keySecret, keyIdem, keySKU, keySKUCode}}
	// accessPlans: plans with their code reservations, and the SKUs' plan counters.
	accessPlans = TableAccess{Read: true, Query: true, Writes: rw, WriteKeys: []string{keySecret, keyIdem, keyPlan, keyPlanCode, keySKU}}
	// accessPriceLists: overrides are versioned puts (a DELETE puts a closing version); no POST.
	accessPriceLists = TableAccess{Read: true, Query: true, Writes: []string{actPut}, WriteKeys: []string{keySecret, keyOverride}}
	// accessSubscriptions: subscriptions with their history, the tenant's counters, customer.*
	// events; a plan change checks that the plan is still published (ConditionCheck on PLAN#).
	accessSubscriptions = TableAccess{Read: true, Query: true, Writes: rw, WriteKeys: []string{keySecret, keyIdem, keySub, keyEnt, keyEvent}, CheckKeys: []string{keyPlan}}
	// accessUsageAPI: the usage routes record usage (claims, aggregate logs in transactions with
	// threshold events, the period registry, late-usage flags); Delete releases an
	// Idempotency-Key.
	accessUsageAPI = TableAccess{Read: true, Query: true, Writes: rw, WriteKeys: []string{keySecret, keyIdem, keyUsageRec, keyUsageAgg, keyUsageReg, keyUsageLate, keyEvent}}
	// accessUsageConsumer: the queue, stream and file consumers record usage as the API does;
	// they serve no HTTP (no secret, no Idempotency-Key) and delete nothing.
	accessUsageConsumer = TableAccess{Read: true, Query: true, Writes: rwu, WriteKeys: []string{keyUsageRec, keyUsageAgg, keyUsageReg, keyUsageLate, keyEvent}}
	// accessBillingAPI: POST /billing/runs puts the run with its period index entry; Delete
	// releases an Idempotency-Key.
	accessBillingAPI = TableAccess{Read: true, Query: true, Writes: []string{actPut, actDelete}, WriteKeys: []string{keySecret, keyIdem, keyRun, keyRunP}}
	// accessBillingWorker: runs (the scheduled start creates one; planning, fan-out pages,
	// shards, failures, completion with its event), the period's close claim, tenant
	// marks, invoices issued in one transaction (invoice, tenant reference, number sequence,
	// ledgers, the tenant's InvoicedThrough or a ConditionCheck on it, invoice.generated),
	// commission lines (BatchWriteItem, its only user) and totals, late-usage flags resolved
	// (aggregate log aborts, flag updates, acknowledgements by DeleteItem).
	accessBillingWorker = TableAccess{Read: true, Query: true, Writes: []string{actPut, actUpdate, actDelete, actBatchWrite},
		WriteKeys: []string{keyRun, keyRunP, keyClose, keyRunT, keyInv, keyTInv, keyInvSeq, keyLedger, keyComm, keyEnt, keyEvent, keyUsageLate, keyUsageAgg},
		CheckKeys: []string{keyEnt}}
	// accessUsageKeys: the usage key secret (created on first use) and, for a sync, the platform
	// entity and the distributors and partners (GSI1).
	accessUsageKeys = TableAccess{Read: true, Query: true, Writes: []string{actPut}, WriteKeys: []string{keyUsageKS}}
)

// FunctionSpec sizes one Lambda function and says what it may do on the table. Wire, when set,
// connects the function to what else it uses (an event source, the bus) once the stack's
// resources exist.
type FunctionSpec struct {
	Description string
	MemoryMB    int
	Timeout     time.Duration
	Table       TableAccess
	Wire        func(s *CmsStack, fn awslambda.Function)
}

// Functions lists every function of functions/<name>. A route served by a function missing here
// makes NewCmsStack fail, and a test checks this list against the functions/ directory.
var Functions = map[string]FunctionSpec{
	// argon2id (m=19 MiB, t=2) is CPU-bound: 1,024 MB buys the CPU share that keeps a check fast.
	"auth":       {Description: "Sign-in, refresh, logout, federated sign-in, invitations, JWKS", MemoryMB: 1024, Timeout: 10 * time.Second, Table: accessAuth},
	"authorizer": {Description: "API Gateway REQUEST authorizer", MemoryMB: 512, Timeout: 10 * time.Second, Table: accessAuthorizer},
	"bootstrap":  {Description: "Creates the platform entity and the first platform admin (invoke once)", MemoryMB: 1024, Timeout: 30 * time.Second, Table: accessBootstrap},
	"docs":       {Description: "OpenAPI document and Swagger UI", MemoryMB: 256, Timeout: 10 * time.Second, Table: accessSecretsOnly},

	"distributors": {Description: "Distributors routes", MemoryMB: 512, Timeout: 10 * time.Second, Table: accessHierarchy},
	"partners":     {Description: "Partners routes", MemoryMB: 512, Timeout: 10 * time.Second, Table: accessHierarchy},
	"tenants":      {Description: "Tenants routes", MemoryMB: 512, Timeout: 10 * time.Second, Table: accessTenants},
	// Creating a user with a password hashes it (argon2id).
	"users":         {Description: "Users routes", MemoryMB: 1024, Timeout: 10 * time.Second, Table: accessUsers},
	"roles":         {Description: "Roles routes", MemoryMB: 512, Timeout: 10 * time.Second, Table: accessRoles},
	"pricing":       {Description: "SKUs and their pricing models", MemoryMB: 512, Timeout: 10 * time.Second, Table: accessPricing},
	"plans":         {Description: "Plans: drafts, publication, retirement", MemoryMB: 512, Timeout: 10 * time.Second, Table: accessPlans},
	"pricelists":    {Description: "Per-entity price overrides", MemoryMB: 512, Timeout: 10 * time.Second, Table: accessPriceLists},
	"subscriptions": {Description: "Subscriptions, licence keys, history", MemoryMB: 512, Timeout: 10 * time.Second, Table: accessSubscriptions},

	// The outbox publisher reads the table's stream, not the table, and needs no secret.
	"publisher": {Description: "Outbox publisher: table stream -> EventBridge bus", MemoryMB: 256, Timeout: 30 * time.Second, Wire: wirePublisher},

	// Usage (docs/deploy.md). 29 s: API Gateway's integration limit; a POST holds up to 1,000
	// records.
	"usage":       {Description: "Usage records: POST and GET /api/v1/usage", MemoryMB: 1024, Timeout: 29 * time.Second, Table: accessUsageAPI},
	"usagequeue":  {Description: "Usage queue consumer (SQS event source)", MemoryMB: 512, Timeout: UsageQueueConsumerTimeout, Table: accessUsageConsumer, Wire: wireUsageQueue},
	"usagestream": {Description: "Usage stream consumer (Kinesis event source)", MemoryMB: 512, Timeout: 60 * time.Second, Table: accessUsageConsumer, Wire: wireUsageStream},
	"usagefiles":  {Description: "Usage file drops (S3 notifications of usage/), writes reports/", MemoryMB: 1024, Timeout: 15 * time.Minute, Table: accessUsageConsumer, Wire: wireUsageFiles},

	// Billing (docs/billing.md). The summary and commission queries read whole periods.
	"billing":       {Description: "Billing runs and summary", MemoryMB: 512, Timeout: 29 * time.Second, Table: accessBillingAPI, Wire: wireBillingAPI},
	"invoices":      {Description: "Invoices routes", MemoryMB: 512, Timeout: 29 * time.Second, Table: accessBillingRead},
	"commissions":   {Description: "Commissions routes", MemoryMB: 512, Timeout: 29 * time.Second, Table: accessBillingRead},
	"billingworker": {Description: "Billing worker: runs, invoices, commissions, exports (SQS event source)", MemoryMB: 1024, Timeout: BillingWorkerTimeout, Table: accessBillingWorker, Wire: wireBillingWorker},

	// API keys (docs/deploy.md): a sync converges every key; API Gateway's management API
	// allows a few calls per second, so a first sync of thousands of partners takes minutes.
	"usagekeys": {Description: "API keys and usage-plan keys of the channel (table stream; sync on demand)", MemoryMB: 256, Timeout: 15 * time.Minute, Table: accessUsageKeys, Wire: wireUsageKeys},
}

// The consumers' timeouts set their queues' visibility timeouts (six times, as Lambda's SQS
// event source recommends).
const (
	UsageQueueConsumerTimeout = 30 * time.Second
	BillingWorkerTimeout      = 5 * time.Minute
)

// BillingSchedule starts the monthly billing run: 00:05 UTC on the 1st, for the month that ended.
const BillingSchedule = "cron(5 0 1 * ? *)"

// BillingStartMessage is what the schedule sends to the billing queue (billing.KindStart).
const BillingStartMessage = `{"kind":"start"}`

// AuthorizerFunction is the name of the function used as the API's Lambda authorizer.
const AuthorizerFunction = "authorizer"

// Tier is a partner tier with its usage plan limits.
type Tier struct {
	Name          string
	RatePerSec    float64 // steady requests per second per API key
	Burst         float64
	QuotaPerMonth float64
}

// Tiers are the usage plans, one per partner tier (SPEC 3). The numbers are starting points;
// change them here.
var Tiers = []Tier{
	{Name: "standard", RatePerSec: 10, Burst: 20, QuotaPerMonth: 100_000},
	{Name: "premium", RatePerSec: 50, Burst: 100, QuotaPerMonth: 1_000_000},
	{Name: "enterprise", RatePerSec: 200, Burst: 400, QuotaPerMonth: 10_000_000},
}

// CmsStackProps configures NewCmsStack.
type CmsStackProps struct {
	awscdk.StackProps
	// DistDir holds one <function>/bootstrap per function (make build). Default: ../dist.
	DistDir string
	// Config is the functions' configuration, rendered into their environment (CMS_*). Its
	// Table, EventBus, queues, stream and buckets are ignored: the functions get the stack's.
	// nil: app.Defaults().
	Config *app.Config
	// Routes are the HTTP routes; default app.AllRoutes(), the routes the code serves.
	Routes []httpapi.Route
	// APIKeysOptional stops authorised methods from requiring the API key that the authorizer
	// names (usageIdentifierKey): calls are then neither metered nor throttled per partner. It
	// exists for the first deployment over a stack that had no keys: deploy with it, run the
	// key sync, deploy without it (docs/deploy.md). Public methods never require a key.
	APIKeysOptional bool
	// StageRate and StageBurst throttle the whole stage (requests per second). Default 500/1000.
	StageRate, StageBurst float64
	// AlarmEmail, when set, subscribes an e-mail address to the alarm topic.
	AlarmEmail string
}

// CmsStack is the deployed system; its fields let tests find the resources.
type CmsStack struct {
	awscdk.Stack
	Table      awsdynamodb.Table
	API        awsapigateway.RestApi
	Authorizer awsapigateway.RequestAuthorizer
	Functions  map[string]awslambda.Function
	UsageQueue awssqs.Queue
	UsageDLQ   awssqs.Queue
	// BillingQueue feeds the billing worker; BillingDLQ receives what failed 5 times.
	BillingQueue awssqs.Queue
	BillingDLQ   awssqs.Queue
	// BillingSchedule sends {"kind":"start"} to BillingQueue monthly; BillingScheduleRole may
	// send to that queue only.
	BillingSchedule     awsscheduler.CfnSchedule
	BillingScheduleRole awsiam.Role
	// PublisherDLQ receives the description of stream batches the publisher gave up on.
	PublisherDLQ awssqs.Queue
	Stream       awskinesis.Stream
	Usage        awss3.Bucket
	Exports      awss3.Bucket
	Bus          awsevents.EventBus
	AlarmTopic   awssns.Topic
	UsagePlans   map[string]awsapigateway.UsagePlan
	// UsageBucketName is the usage bucket's fixed name (<stack>-usage-<account>-<region>): the
	// functions, the usagefiles policy and its S3 invoke permission use it instead of a reference
	// to the bucket, which would make a cycle (bucket -> notification permission -> function ->
	// bucket).
	UsageBucketName *string

	// UsageKeysDLQ receives the description of stream batches the usagekeys function gave up on.
	UsageKeysDLQ awssqs.Queue
	// UsageKeyPrefix starts the name of every API key of this stack (<stack>-usage-<entity id>).
	UsageKeyPrefix string

	alarmAction awscloudwatch.IAlarmAction
}

// NewCmsStack defines the whole system in one stack. It returns an error, before defining
// anything, when a function's binary is missing from DistDir, a route names a function absent
// from Functions, or the configuration is invalid.
func NewCmsStack(scope constructs.Construct, id string, props *CmsStackProps) (*CmsStack, error) {
	if props == nil {
		props = &CmsStackProps{}
	}
	routes := props.Routes
	if routes == nil {
		routes = app.AllRoutes()
	}
	cfg := app.Defaults()
	if props.Config != nil {
		cfg = *props.Config
	}
	cfg.Table = "from-the-stack"
	distDir := props.DistDir
	if distDir == "" {
		distDir = filepath.Join("..", "dist")
	}
	stackName := id
	if props.StackName != nil {
		stackName = *props.StackName
	}
	keyPrefix := stackName + "-usage-"
	if err := check(routes, cfg, distDir, stackName); err != nil {
		return nil, err
	}
	stageRate, stageBurst := props.StageRate, props.StageBurst
	if stageRate == 0 {
		stageRate = 500
	}
	if stageBurst == 0 {
		stageBurst = 2 * stageRate
	}

	sp := props.StackProps
	if sp.Description == nil {
		sp.Description = jsii.String("Channel billing platform: API, functions, table, usage ingestion resources")
	}
	stack := awscdk.NewStack(scope, &id, &sp)
	s := &CmsStack{Stack: stack, Functions: map[string]awslambda.Function{}, UsagePlans: map[string]awsapigateway.UsagePlan{}, UsageKeyPrefix: keyPrefix}

	s.Table = newTable(stack)
	s.AlarmTopic = awssns.NewTopic(stack, jsii.String("Alarms"), &awssns.TopicProps{
		DisplayName: jsii.String("Channel billing platform alarms"), EnforceSSL: jsii.Bool(true),
	})
	if props.AlarmEmail != "" {
		s.AlarmTopic.AddSubscription(awssnssubscriptions.NewEmailSubscription(jsii.String(props.AlarmEmail), nil))
	}
	s.alarmAction = awscloudwatchactions.NewSnsAction(s.AlarmTopic)
	s.newUsageIngestion(stackName)
	s.newBillingQueue()
	s.Bus = awsevents.NewEventBus(stack, jsii.String("Events"), &awsevents.EventBusProps{
		Description: jsii.String("Domain events of the channel billing platform (outbox publisher, webhooks)"),
	})

	// The stack's own resources; every other setting comes from cfg.
	env := map[string]*string{
		"CMS_TABLE": s.Table.TableName(), "CMS_EVENT_BUS": s.Bus.EventBusName(),
		// URLs, not names: no function needs sqs:GetQueueUrl.
		"CMS_USAGE_QUEUE": s.UsageQueue.QueueUrl(), "CMS_USAGE_DLQ": s.UsageDLQ.QueueUrl(),
		"CMS_USAGE_BUCKET": s.UsageBucketName, "CMS_USAGE_STREAM": s.Stream.StreamName(),
		"CMS_BILLING_QUEUE": s.BillingQueue.QueueUrl(), "CMS_EXPORTS_BUCKET": s.Exports.BucketName(),
	}
	for k, v := range ConfigEnv(cfg) {
		if env[k] == nil {
			env[k] = jsii.String(v)
		}
	}
	for _, name := range sortedKeys(Functions) {
		spec := Functions[name]
		fn := newFunction(stack, s.Table, name, spec, filepath.Join(distDir, name), env)
		s.Functions[name] = fn
		alarm := awscloudwatch.NewAlarm(stack, jsii.String(construct(name)+"FunctionErrors"), &awscloudwatch.AlarmProps{
			AlarmDescription: jsii.String(fmt.Sprintf("The %s function returned errors (failed invocations, timeouts, crashes).", name)),
			Metric:           fn.MetricErrors(&awscloudwatch.MetricOptions{Period: awscdk.Duration_Minutes(jsii.Number(5)), Statistic: jsii.String("Sum")}),
			Threshold:        jsii.Number(1), EvaluationPeriods: jsii.Number(1),
			ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
			TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
		})
		alarm.AddAlarmAction(s.alarmAction)
	}

	s.newBillingSchedule()
	s.newAPI(routes, !props.APIKeysOptional, stageRate, stageBurst)
	// After the API: usagekeys needs the usage plans' ids.
	for _, name := range sortedKeys(Functions) {
		if w := Functions[name].Wire; w != nil {
			w(s, s.Functions[name])
		}
	}
	apiErrors := awscloudwatch.NewAlarm(stack, jsii.String("Api5xx"), &awscloudwatch.AlarmProps{
		AlarmDescription: jsii.String("The API answered 5xx (integration errors, timeouts, authorizer failures)."),
		Metric:           s.API.MetricServerError(&awscloudwatch.MetricOptions{Period: awscdk.Duration_Minutes(jsii.Number(5)), Statistic: jsii.String("Sum")}),
		Threshold:        jsii.Number(5), EvaluationPeriods: jsii.Number(1),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	apiErrors.AddAlarmAction(s.alarmAction)

	out := func(name, desc string, value *string) {
		awscdk.NewCfnOutput(stack, jsii.String(name), &awscdk.CfnOutputProps{Value: value, Description: jsii.String(desc)})
	}
	out("ApiUrl", "Base URL of the API (append /api/v1/...)", s.API.Url())
	out("TableName", "The DynamoDB table", s.Table.TableName())
	out("BootstrapFunctionName", "Invoke once with {\"email\",\"password\"} to create the first platform admin", s.Functions["bootstrap"].FunctionName())
	out("UsageQueueUrl", "Usage records queue", s.UsageQueue.QueueUrl())
	out("UsageDeadLetterQueueUrl", "Usage records that could not be processed", s.UsageDLQ.QueueUrl())
	out("UsageStreamName", "Usage records stream", s.Stream.StreamName())
	out("UsageBucketName", "Usage file drops (usage/ prefix)", s.Usage.BucketName())
	out("ExportsBucketName", "Finance exports (exports/<YYYY-MM>/)", s.Exports.BucketName())
	out("BillingQueueUrl", "Billing work queue (the schedule and POST /billing/runs start runs on it)", s.BillingQueue.QueueUrl())
	out("BillingDeadLetterQueueUrl", "Billing messages that failed 5 times", s.BillingDLQ.QueueUrl())
	out("BillingScheduleName", "Monthly billing run: "+BillingSchedule+" UTC", s.BillingSchedule.Ref())
	out("EventBusName", "Domain events bus", s.Bus.EventBusName())
	if s.PublisherDLQ != nil {
		out("PublisherDeadLetterQueueUrl", "Stream batches the outbox publisher gave up on", s.PublisherDLQ.QueueUrl())
	}
	out("AlarmTopicArn", "Alarm notifications", s.AlarmTopic.TopicArn())
	out("UsageKeysFunctionName", "Invoke with {\"action\":\"sync\"} to converge every API key (make sync-usage-keys)", s.Functions["usagekeys"].FunctionName())
	out("UsageKeysDeadLetterQueueUrl", "Stream batches the usagekeys function gave up on (run make sync-usage-keys)", s.UsageKeysDLQ.QueueUrl())
	for _, t := range Tiers {
		out("UsagePlan"+construct(t.Name), "Usage plan of the "+t.Name+" partner tier", s.UsagePlans[t.Name].UsagePlanId())
	}
	return s, nil
}

// check validates the inputs of NewCmsStack, reporting every problem at once.
func check(routes []httpapi.Route, cfg app.Config, distDir, stackName string) error {
	var errs []error
	// The usage bucket is named <stack>-usage-<account>-<region> (at most 63 characters; regions
	// have at most 14).
	if !regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,28}$`).MatchString(strings.ToLower(stackName)) {
		errs = append(errs, fmt.Errorf("stack name %q: the usage bucket is named after it: at most 29 letters, digits and hyphens", stackName))
	}
	if err := cfg.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("configuration: %w", err))
	}
	seen := map[string]bool{}
	for _, r := range routes {
		if _, ok := Functions[r.Function]; !ok && !seen[r.Function] {
			errs = append(errs, fmt.Errorf("route %s %s: function %q is not in infra's Functions (infra/stack.go; also template.yaml and events/%s/, docs/deploy.md)", r.Method, r.Path, r.Function, r.Function))
		}
		seen[r.Function] = true
		if r.Function == AuthorizerFunction {
			errs = append(errs, fmt.Errorf("route %s %s: the authorizer serves no route", r.Method, r.Path))
		}
	}
	for _, name := range sortedKeys(Functions) {
		if a := Functions[name].Table; len(a.Writes) > 0 && len(a.WriteKeys) == 0 {
			errs = append(errs, fmt.Errorf("function %s: table writes without WriteKeys (every write is narrowed by partition key)", name))
		}
		if fi, err := os.Stat(filepath.Join(distDir, name, "bootstrap")); err != nil || fi.IsDir() {
			errs = append(errs, fmt.Errorf("%s/%s/bootstrap is missing: run make build", distDir, name))
		}
	}
	return errors.Join(errs...)
}

// newTable is the single table (docs/data-model.md). It is retained when the stack is deleted.
func newTable(stack awscdk.Stack) awsdynamodb.Table {
	str := awsdynamodb.AttributeType_STRING
	t := awsdynamodb.NewTable(stack, jsii.String("Table"), &awsdynamodb.TableProps{
		PartitionKey:        &awsdynamodb.Attribute{Name: jsii.String("PK"), Type: str},
		SortKey:             &awsdynamodb.Attribute{Name: jsii.String("SK"), Type: str},
		BillingMode:         awsdynamodb.BillingMode_PAY_PER_REQUEST,
		TimeToLiveAttribute: jsii.String(tablestore.TTLAttr),
		Stream:              awsdynamodb.StreamViewType_NEW_AND_OLD_IMAGES,
		PointInTimeRecoverySpecification: &awsdynamodb.PointInTimeRecoverySpecification{
			PointInTimeRecoveryEnabled: jsii.Bool(true),
		},
		DeletionProtection: jsii.Bool(true),
		RemovalPolicy:      awscdk.RemovalPolicy_RETAIN,
	})
	t.AddGlobalSecondaryIndex(&awsdynamodb.GlobalSecondaryIndexProps{
		IndexName:      jsii.String(tablestore.GSI1),
		PartitionKey:   &awsdynamodb.Attribute{Name: jsii.String("GSI1PK"), Type: str},
		SortKey:        &awsdynamodb.Attribute{Name: jsii.String("GSI1SK"), Type: str},
		ProjectionType: awsdynamodb.ProjectionType_ALL,
	})
	return t
}

// newFunction defines one function with its own role (logs of its own log group, the table
// actions of its spec, nothing else) and log group.
func newFunction(stack awscdk.Stack, table awsdynamodb.Table, name string, spec FunctionSpec, codeDir string, env map[string]*string) awslambda.Function {
	id := construct(name) + "Function"
	logs := awslogs.NewLogGroup(stack, jsii.String(id+"Logs"), &awslogs.LogGroupProps{
		Retention: awslogs.RetentionDays_ONE_MONTH,
	})
	role := awsiam.NewRole(stack, jsii.String(id+"Role"), &awsiam.RoleProps{
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
		Description: jsii.String("Role of the " + name + " function"),
	})
	// Instead of AWSLambdaBasicExecutionRole (logs:* on every log group): its own group only.
	logs.GrantWrite(role)
	grantTable(role, table, spec.Table)
	return awslambda.NewFunction(stack, jsii.String(id), &awslambda.FunctionProps{
		Description:  jsii.String(spec.Description),
		Runtime:      awslambda.Runtime_PROVIDED_AL2023(),
		Architecture: awslambda.Architecture_ARM_64(),
		Handler:      jsii.String("bootstrap"),
		Code:         awslambda.Code_FromAsset(jsii.String(codeDir), nil),
		MemorySize:   jsii.Number(float64(spec.MemoryMB)),
		Timeout:      awscdk.Duration_Seconds(jsii.Number(spec.Timeout.Seconds())),
		Environment:  &env,
		Role:         role,
		LogGroup:     logs,
	})
}

// grantTable adds a function's table statements: reads on the table, Query on the table and
// GSI1, writes conditioned on the partition keys of the items they touch, condition checks
// likewise.
func grantTable(role awsiam.IRole, table awsdynamodb.Table, a TableAccess) {
	add := func(actions []string, resources []*string, leadingKeys []string) {
		st := &awsiam.PolicyStatementProps{Actions: jsii.Strings(actions...), Resources: &resources}
		if leadingKeys != nil {
			st.Conditions = &map[string]any{"ForAllValues:StringLike": map[string]any{"dynamodb:LeadingKeys": leadingKeys}}
		}
		role.AddToPrincipalPolicy(awsiam.NewPolicyStatement(st))
	}
	tableArn := table.TableArn()
	if a.Read {
		add([]string{actGet, actBatchGet}, []*string{tableArn}, nil)
	}
	if a.Query {
		add([]string{actQuery}, []*string{tableArn, jsii.String(*tableArn + "/index/" + tablestore.GSI1)}, nil)
	}
	if len(a.Writes) > 0 {
		add(a.Writes, []*string{tableArn}, a.WriteKeys)
	}
	if len(a.CheckKeys) > 0 {
		add([]string{actCondCheck}, []*string{tableArn}, a.CheckKeys)
	}
}

// newAPI defines the REST API: one method per route with a Lambda proxy integration of its
// function, the REQUEST authorizer on every non-public route, the gateway responses in the
// platform's envelope, and one usage plan per partner tier.
func (s *CmsStack) newAPI(routes []httpapi.Route, apiKeyRequired bool, rate, burst float64) {
	stack := s.Stack
	s.API = awsapigateway.NewRestApi(stack, jsii.String("Api"), &awsapigateway.RestApiProps{
		RestApiName:      jsii.String(*stack.StackName() + "-api"),
		Description:      jsii.String("Channel billing platform API"),
		EndpointTypes:    &[]awsapigateway.EndpointType{awsapigateway.EndpointType_REGIONAL},
		ApiKeySourceType: awsapigateway.ApiKeySourceType_AUTHORIZER,
		// The Swagger UI favicons are the only binary answers; the handlers base64 them.
		BinaryMediaTypes: jsii.Strings("image/*"),
		CloudWatchRole:   jsii.Bool(false), // an account-wide setting; not this stack's to own
		DeployOptions: &awsapigateway.StageOptions{
			StageName:            jsii.String(StageName),
			ThrottlingRateLimit:  jsii.Number(rate),
			ThrottlingBurstLimit: jsii.Number(burst),
		},
	})
	s.Authorizer = awsapigateway.NewRequestAuthorizer(stack, jsii.String("Authorizer"), &awsapigateway.RequestAuthorizerProps{
		AuthorizerName:  jsii.String("cms-authorizer"),
		Handler:         s.Functions[AuthorizerFunction],
		IdentitySources: &[]*string{awsapigateway.IdentitySource_Header(jsii.String("Authorization"))},
		// A decision (role, scope, suspended) is reused for 60 s per Authorization header:
		// suspensions and role changes take up to a minute to reach a caller. docs/deploy.md.
		ResultsCacheTtl: awscdk.Duration_Seconds(jsii.Number(60)),
	})
	integrations := map[string]awsapigateway.LambdaIntegration{}
	for _, r := range routes {
		in, ok := integrations[r.Function]
		if !ok {
			// One invoke permission per function for this API, rather than one per method: the
			// same reach in practice (only this API's methods integrate the function), and it
			// keeps the stack well under CloudFormation's 500 resources as routes grow.
			in = awsapigateway.NewLambdaIntegration(s.Functions[r.Function], &awsapigateway.LambdaIntegrationOptions{
				Proxy: jsii.Bool(true), ScopePermissionToMethod: jsii.Bool(false),
			})
			integrations[r.Function] = in
		}
		opts := &awsapigateway.MethodOptions{AuthorizationType: awsapigateway.AuthorizationType_NONE}
		if !r.Public {
			opts = &awsapigateway.MethodOptions{
				AuthorizationType: awsapigateway.AuthorizationType_CUSTOM,
				Authorizer:        s.Authorizer,
				ApiKeyRequired:    jsii.Bool(apiKeyRequired),
			}
		}
		s.API.Root().ResourceForPath(jsii.String(r.Path)).AddMethod(jsii.String(r.Method), in, opts)
	}
	for _, g := range gatewayResponses {
		body := fmt.Sprintf(`{"code":%d,"data":null,"errors":[{"code":%q,"message":%q}]}`, g.Status, g.Code, g.Message)
		s.API.AddGatewayResponse(jsii.String("Gw"+construct(strings.ToLower(g.Type))), &awsapigateway.GatewayResponseOptions{
			Type:            awsapigateway.ResponseType_Of(jsii.String(g.Type)),
			StatusCode:      jsii.String(strconv.Itoa(g.Status)),
			Templates:       &map[string]*string{"application/json": jsii.String(body)},
			ResponseHeaders: &map[string]*string{"Cache-Control": jsii.String("'no-store'")},
		})
	}
	for _, t := range Tiers {
		s.UsagePlans[t.Name] = s.API.AddUsagePlan(jsii.String("Plan"+construct(t.Name)), &awsapigateway.UsagePlanProps{
			Name:        jsii.String(*stack.StackName() + "-" + t.Name),
			Description: jsii.String("Partners of the " + t.Name + " tier"),
			Throttle:    &awsapigateway.ThrottleSettings{RateLimit: jsii.Number(t.RatePerSec), BurstLimit: jsii.Number(t.Burst)},
			Quota:       &awsapigateway.QuotaSettings{Limit: jsii.Number(t.QuotaPerMonth), Period: awsapigateway.Period_MONTH},
			ApiStages:   &[]*awsapigateway.UsagePlanPerApiStage{{Api: s.API, Stage: s.API.DeploymentStage()}},
		})
	}
}

// GatewayResponse is an answer API Gateway gives on its own, in the platform's envelope.
type GatewayResponse struct {
	Type    string // API Gateway response type
	Status  int
	Code    string
	Message string
}

// gatewayResponses covers every response type, with API Gateway's own status except
// MISSING_AUTHENTICATION_TOKEN (what a REST API answers for an unknown route): 404 as locally.
// Bodies are fixed: nothing of API Gateway's own message reaches the caller.
var gatewayResponses = []GatewayResponse{
	{"UNAUTHORIZED", 401, "unauthorized", "Unauthorized"},
	{"ACCESS_DENIED", 403, "forbidden", "Forbidden"},
	{"INVALID_API_KEY", 403, "forbidden", "Forbidden"},
	{"INVALID_SIGNATURE", 403, "forbidden", "Forbidden"},
	{"EXPIRED_TOKEN", 403, "forbidden", "Forbidden"},
	{"WAF_FILTERED", 403, "forbidden", "Forbidden"},
	{"MISSING_AUTHENTICATION_TOKEN", 404, "not_found", "No such route."},
	{"RESOURCE_NOT_FOUND", 404, "not_found", "No such route."},
	{"BAD_REQUEST_PARAMETERS", 400, "invalid", "Bad request."},
	{"BAD_REQUEST_BODY", 400, "invalid", "Bad request."},
	{"REQUEST_TOO_LARGE", 413, "body_too_large", "The request is over API Gateway's payload limit."},
	{"UNSUPPORTED_MEDIA_TYPE", 415, "unsupported_media_type", "Unsupported media type."},
	{"THROTTLED", 429, "too_many_requests", "Too many requests."},
	{"QUOTA_EXCEEDED", 429, "quota_exceeded", "The usage plan's quota is used up for this period."},
	{"DEFAULT_4XX", 400, "invalid", "Bad request."},
	{"AUTHORIZER_FAILURE", 500, "internal", "Internal error."},
	{"AUTHORIZER_CONFIGURATION_ERROR", 500, "internal", "Internal error."},
	{"API_CONFIGURATION_ERROR", 500, "internal", "Internal error."},
	{"INTEGRATION_FAILURE", 504, "internal", "Internal error."},
	{"INTEGRATION_TIMEOUT", 504, "internal", "Internal error."},
	{"DEFAULT_5XX", 500, "internal", "Internal error."},
}

// newUsageIngestion defines the usage channels that usagequeue, usagestream and usagefiles
// consume (their Wire functions, consumers.go): the queue with its dead-letter queue, the stream,
// the usage bucket (named by its fixed name, UsageBucketName) and the exports bucket.
func (s *CmsStack) newUsageIngestion(stackName string) {
	stack := s.Stack
	s.UsageDLQ = s.deadLetterQueue("UsageDeadLetters", "Usage records are waiting in the dead-letter queue: inspect and redrive them.")
	s.UsageQueue = awssqs.NewQueue(stack, jsii.String("UsageQueue"), &awssqs.QueueProps{
		// Six times the consumer's timeout, as Lambda's SQS event source recommends.
		VisibilityTimeout: awscdk.Duration_Seconds(jsii.Number(180)),
		RetentionPeriod:   awscdk.Duration_Days(jsii.Number(4)),
		Encryption:        awssqs.QueueEncryption_SQS_MANAGED,
		EnforceSSL:        jsii.Bool(true),
		DeadLetterQueue:   &awssqs.DeadLetterQueue{Queue: s.UsageDLQ, MaxReceiveCount: jsii.Number(5)},
	})

	// One provisioned shard (1 MB/s or 1,000 records/s in) costs less at rest than on-demand
	// mode; docs/deploy.md has the figures. Records live 24 h; the stream goes with the stack.
	s.Stream = awskinesis.NewStream(stack, jsii.String("UsageStream"), &awskinesis.StreamProps{
		StreamMode:      awskinesis.StreamMode_PROVISIONED,
		ShardCount:      jsii.Number(1),
		RetentionPeriod: awscdk.Duration_Hours(jsii.Number(24)),
		Encryption:      awskinesis.StreamEncryption_MANAGED,
		RemovalPolicy:   awscdk.RemovalPolicy_DESTROY,
	})

	bucket := func(id string, versioned bool, name *string) awss3.Bucket {
		return awss3.NewBucket(stack, jsii.String(id), &awss3.BucketProps{
			BucketName:        name,
			BlockPublicAccess: awss3.BlockPublicAccess_BLOCK_ALL(),
			Encryption:        awss3.BucketEncryption_S3_MANAGED,
			EnforceSSL:        jsii.Bool(true),
			ObjectOwnership:   awss3.ObjectOwnership_BUCKET_OWNER_ENFORCED,
			Versioned:         jsii.Bool(versioned),
			RemovalPolicy:     awscdk.RemovalPolicy_RETAIN,
			LifecycleRules: &[]*awss3.LifecycleRule{{
				AbortIncompleteMultipartUploadAfter: awscdk.Duration_Days(jsii.Number(7)),
			}},
		})
	}
	s.UsageBucketName = jsii.String(strings.ToLower(stackName) + "-usage-" + *awscdk.Aws_ACCOUNT_ID() + "-" + *awscdk.Aws_REGION())
	s.Usage = bucket("UsageBucket", false, s.UsageBucketName)
	// Re-running an export replaces its files; versions keep what finance downloaded before.
	s.Exports = bucket("ExportsBucket", true, nil)
}

// deadLetterQueue defines the dead-letter queue id (SSE-SQS, TLS only, messages kept 14 days,
// SQS's most: the time to inspect and redrive them) and its alarm id+"Depth", described by desc,
// raised as soon as the queue holds a message.
func (s *CmsStack) deadLetterQueue(id, desc string) awssqs.Queue {
	q := awssqs.NewQueue(s.Stack, jsii.String(id), &awssqs.QueueProps{
		RetentionPeriod: awscdk.Duration_Days(jsii.Number(14)),
		Encryption:      awssqs.QueueEncryption_SQS_MANAGED,
		EnforceSSL:      jsii.Bool(true),
	})
	s.alarmOnDepth(id+"Depth", q, desc)
	return q
}

// alarmOnDepth alarms as soon as a dead-letter queue holds a message.
func (s *CmsStack) alarmOnDepth(id string, q awssqs.Queue, desc string) {
	a := awscloudwatch.NewAlarm(s.Stack, jsii.String(id), &awscloudwatch.AlarmProps{
		AlarmDescription: jsii.String(desc),
		Metric: q.MetricApproximateNumberOfMessagesVisible(&awscloudwatch.MetricOptions{
			Period: awscdk.Duration_Minutes(jsii.Number(5)), Statistic: jsii.String("Maximum"),
		}),
		Threshold: jsii.Number(1), EvaluationPeriods: jsii.Number(1),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	a.AddAlarmAction(s.alarmAction)
}

// wirePublisher feeds the publisher the table's stream (outbox INSERTs only) and lets it put
// events on the bus. It reports partial batch failures (the earliest unpublished record); a batch
// still failing after 10 retries is described in PublisherDLQ and alarmed on, and the stream moves
// on (the outbox item stays in the table for 7 days).
func wirePublisher(s *CmsStack, fn awslambda.Function) {
	s.PublisherDLQ = s.deadLetterQueue("PublisherDeadLetters", "The outbox publisher gave up on stream records: events were not published.")
	s.feedTableStream(fn, s.PublisherDLQ, &[]*map[string]interface{}{awslambda.FilterCriteria_Filter(&map[string]interface{}{
		"eventName": awslambda.FilterRule_IsEqual(jsii.String("INSERT")),
		"dynamodb": map[string]interface{}{"NewImage": map[string]interface{}{
			"Kind": map[string]interface{}{"S": awslambda.FilterRule_IsEqual(jsii.String("event"))},
		}},
	})})
	s.Bus.GrantPutEventsTo(fn, nil)
}

// feedTableStream feeds fn the records of the table's stream that filters select, as both
// stream consumers (publisher, usagekeys) want them: from the oldest record, 100 a batch,
// reporting partial batch failures, halving a failing batch to isolate the bad record, and after
// 10 retries a description of the batch to dlq, the stream moving on.
func (s *CmsStack) feedTableStream(fn awslambda.Function, dlq awssqs.IQueue, filters *[]*map[string]interface{}) {
	fn.AddEventSource(awslambdaeventsources.NewDynamoEventSource(s.Table, &awslambdaeventsources.DynamoEventSourceProps{
		StartingPosition:        awslambda.StartingPosition_TRIM_HORIZON,
		BatchSize:               jsii.Number(100),
		ReportBatchItemFailures: jsii.Bool(true),
		BisectBatchOnError:      jsii.Bool(true),
		RetryAttempts:           jsii.Number(10),
		OnFailure:               awslambdaeventsources.NewSqsDlq(dlq),
		Filters:                 filters,
	}))
}

// ConfigEnv renders a configuration as the environment app.FromEnv reads: FromEnv of the result
// gives cfg back (a test checks it).
func ConfigEnv(cfg app.Config) map[string]string {
	env := map[string]string{
		"CMS_TABLE":                cfg.Table,
		"CMS_PLATFORM_NAME":        cfg.PlatformName,
		"CMS_PLATFORM_CURRENCY":    cfg.PlatformCurrency,
		"CMS_TOKEN_ISSUER":         cfg.TokenIssuer,
		"CMS_TOKEN_AUDIENCE":       cfg.TokenAudience,
		"CMS_ACCESS_TTL":           cfg.AccessTTL.String(),
		"CMS_REFRESH_TTL":          cfg.RefreshTTL.String(),
		"CMS_MAX_LOGIN_FAILURES":   strconv.Itoa(cfg.MaxLoginFailures),
		"CMS_LOGIN_FAILURE_WINDOW": cfg.FailureWindow.String(),
		"CMS_LOG_LEVEL":            cfg.LogLevel,
		"CMS_IDP_LINK_BY_EMAIL":    strconv.FormatBool(cfg.LinkByEmail),
		"CMS_EVENT_BUS":            cfg.EventBus,
		"CMS_USAGE_QUEUE":          cfg.UsageQueue,
		"CMS_USAGE_DLQ":            cfg.UsageDLQ,
		"CMS_USAGE_BUCKET":         cfg.UsageBucket,
		"CMS_USAGE_STREAM":         cfg.UsageStream,
		"CMS_BILLING_QUEUE":        cfg.BillingQueue,
		"CMS_EXPORTS_BUCKET":       cfg.ExportsBucket,
	}
	for _, p := range cfg.Providers {
		prefix := "CMS_IDP_" + strings.ToUpper(p.Name) + "_"
		env[prefix+"JWKS_URL"] = p.JWKSURL
		env[prefix+"ISSUER"] = p.Issuer
		env[prefix+"AUDIENCE"] = p.Audience
	}
	for k, v := range env {
		if v == "" {
			delete(env, k)
		}
	}
	return env
}

// construct turns a function or tier name into a construct id part: "distributors" -> "Distributors".
func construct(name string) string {
	var b strings.Builder
	for _, part := range strings.FieldsFunc(name, func(r rune) bool { return r == '-' || r == '_' }) {
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
