// Package keyprovisioner keeps API Gateway's API keys and usage-plan keys in step with the
// channel (shared/usagekeys): one API key per platform, distributor and partner, named
// <prefix><entity id>, whose value is the one the authorizer derives, in the usage plan of the
// owner's tier and in no other plan of ours.
//
// It is the handler of the usagekeys function. The table's stream feeds it the records of
// channel entity items (an event source filter keeps those): an insert creates the owner's key,
// a tier change moves the key to the new tier's plan, a removal deletes the key. A sync event
// ({"action":"sync"}) converges every owner at once and deletes the keys of owners that no
// longer exist: run after a first deployment of this feature over an existing table, or to
// repair what a dead-lettered stream batch missed.
//
// Every step is idempotent: it compares what API Gateway holds with what it should hold and
// changes only the difference, so a retried record or a repeated sync changes nothing more.
package keyprovisioner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigateway"
	"github.com/aws/aws-sdk-go-v2/service/apigateway/types"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/tablestore"
	"github.com/channelbilling/cms/shared/usagekeys"
)

// Gateway is the part of the API Gateway client the provisioner uses (*apigateway.Client).
type Gateway interface {
	GetApiKeys(ctx context.Context, in *apigateway.GetApiKeysInput, optFns ...func(*apigateway.Options)) (*apigateway.GetApiKeysOutput, error)
	CreateApiKey(ctx context.Context, in *apigateway.CreateApiKeyInput, optFns ...func(*apigateway.Options)) (*apigateway.CreateApiKeyOutput, error)
	UpdateApiKey(ctx context.Context, in *apigateway.UpdateApiKeyInput, optFns ...func(*apigateway.Options)) (*apigateway.UpdateApiKeyOutput, error)
	DeleteApiKey(ctx context.Context, in *apigateway.DeleteApiKeyInput, optFns ...func(*apigateway.Options)) (*apigateway.DeleteApiKeyOutput, error)
	GetUsagePlanKey(ctx context.Context, in *apigateway.GetUsagePlanKeyInput, optFns ...func(*apigateway.Options)) (*apigateway.GetUsagePlanKeyOutput, error)
	GetUsagePlanKeys(ctx context.Context, in *apigateway.GetUsagePlanKeysInput, optFns ...func(*apigateway.Options)) (*apigateway.GetUsagePlanKeysOutput, error)
	CreateUsagePlanKey(ctx context.Context, in *apigateway.CreateUsagePlanKeyInput, optFns ...func(*apigateway.Options)) (*apigateway.CreateUsagePlanKeyOutput, error)
	DeleteUsagePlanKey(ctx context.Context, in *apigateway.DeleteUsagePlanKeyInput, optFns ...func(*apigateway.Options)) (*apigateway.DeleteUsagePlanKeyOutput, error)
}

// Entities lists the channel for a sync (tablestore.Store).
type Entities interface {
	// GetEntity returns an entity; apperr.NotFound when there is none.
	GetEntity(ctx context.Context, id string) (*hierarchy.Entity, error)
	// ListSubtree returns the entities of one type whose path starts with prefix.
	ListSubtree(ctx context.Context, t access.EntityType, prefix string) ([]*hierarchy.Entity, error)
}

// Environment variables of the provisioner's settings; infra sets them from the stack.
const (
	EnvKeyPrefix = "CMS_USAGE_KEY_PREFIX"
	// EnvPlanPrefix + the upper-cased plan name (CMS_USAGE_PLAN_STANDARD, ...) holds that usage
	// plan's id.
	EnvPlanPrefix = "CMS_USAGE_PLAN_"
)

// Config is the provisioner's own settings, beside app.Config (which every function reads):
// only this function knows the usage plans.
type Config struct {
	// KeyPrefix starts the name of every key of this deployment (<stack>-usage-): keys are
	// found by name, so it must be unique to the deployment in the account and region.
	KeyPrefix string
	// Plans maps each usage plan (usagekeys.Plans) to its API Gateway id.
	Plans map[string]string
}

// ConfigFromEnv reads the settings from the environment; the error names every missing one.
func ConfigFromEnv() (Config, error) {
	c := Config{KeyPrefix: os.Getenv(EnvKeyPrefix), Plans: map[string]string{}}
	for _, plan := range usagekeys.Plans {
		if id := os.Getenv(EnvPlanPrefix + strings.ToUpper(plan)); id != "" {
			c.Plans[plan] = id
		}
	}
	return c, c.Validate()
}

// Validate reports every bad setting.
func (c Config) Validate() error {
	var errs []error
	if c.KeyPrefix == "" || len(c.KeyPrefix) > 512 {
		errs = append(errs, errors.New(EnvKeyPrefix+" is required (at most 512 characters)"))
	}
	seen := map[string]bool{}
	for _, plan := range usagekeys.Plans {
		id := c.Plans[plan]
		if id == "" {
			errs = append(errs, errors.New(EnvPlanPrefix+strings.ToUpper(plan)+" is required"))
		} else if seen[id] {
			errs = append(errs, errors.New(EnvPlanPrefix+strings.ToUpper(plan)+": two plans share the id "+id))
		}
		seen[id] = true
	}
	return errors.Join(errs...)
}

// Provisioner converges API Gateway's keys with the channel. It is safe for concurrent use.
type Provisioner struct {
	gw       Gateway
	keys     *usagekeys.Deriver
	entities Entities
	cfg      Config
	planIDs  []string // ours, in usagekeys.Plans order
	log      *slog.Logger
}

// New returns a provisioner; it fails on invalid settings. log nil: slog.Default().
func New(gw Gateway, keys *usagekeys.Deriver, entities Entities, cfg Config, log *slog.Logger) (*Provisioner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if gw == nil || keys == nil || entities == nil {
		return nil, errors.New("keyprovisioner: a gateway, a deriver and the entities are required")
	}
	if log == nil {
		log = slog.Default()
	}
	p := &Provisioner{gw: gw, keys: keys, entities: entities, cfg: cfg, log: log}
	for _, plan := range usagekeys.Plans {
		p.planIDs = append(p.planIDs, cfg.Plans[plan])
	}
	return p, nil
}

// KeyName returns the name of an owner's key.
func (p *Provisioner) KeyName(ownerID string) string { return p.cfg.KeyPrefix + ownerID }

// held is an API key as API Gateway holds it, with the plans of ours it is in.
type held struct {
	id, name, value string
	enabled         bool
	plans           []string
}

// Ensure gives a key owner its key, enabled, in its plan only. It returns how many changes it
// made (0 when everything was in place). An entity that owns no key changes nothing.
func (p *Provisioner) Ensure(ctx context.Context, e usagekeys.Entity) (int, error) {
	if !usagekeys.Owns(e.Type) {
		return 0, nil
	}
	hs, err := p.heldByName(ctx, p.KeyName(e.ID))
	if err != nil {
		return 0, err
	}
	return p.converge(ctx, e, hs)
}

// Remove deletes an owner's key and its usage-plan keys; it returns how many keys it deleted.
func (p *Provisioner) Remove(ctx context.Context, ownerID string) (int, error) {
	hs, err := p.heldByName(ctx, p.KeyName(ownerID))
	if err != nil {
		return 0, err
	}
	for _, h := range hs {
		if err := p.deleteKey(ctx, h); err != nil {
			return 0, err
		}
	}
	return len(hs), nil
}

// converge makes hs (the keys named after e) exactly one key with e's value, enabled, in e's
// plan and no other of ours. A usage plan holds a key at most once per API stage, so the key
// leaves its old plan before it joins the new one: during a tier change it is in no plan for
// the time of one call, and its calls are refused (403) meanwhile.
func (p *Provisioner) converge(ctx context.Context, e usagekeys.Entity, hs []held) (int, error) {
	want, plan := p.keys.Value(e.ID), p.cfg.Plans[usagekeys.Plan(e)]
	changes := 0
	var keep *held
	for i := range hs {
		if keep == nil && hs[i].value == want {
			keep = &hs[i]
			continue
		}
		// A duplicate, or a key of an older secret: the authorizer no longer names it.
		if err := p.deleteKey(ctx, hs[i]); err != nil {
			return changes, err
		}
		changes++
	}
	if keep == nil {
		out, err := p.gw.CreateApiKey(ctx, &apigateway.CreateApiKeyInput{
			Name: aws.String(p.KeyName(e.ID)), Value: aws.String(want), Enabled: true, CustomerId: aws.String(e.ID),
			Description: aws.String(fmt.Sprintf("Usage key of %s %s (usage plan %s)", e.Type, e.ID, usagekeys.Plan(e))),
		})
		if err != nil {
			return changes, fmt.Errorf("create the key of %s: %w", e.ID, err)
		}
		keep = &held{id: aws.ToString(out.Id), enabled: true}
		changes++
	} else if !keep.enabled {
		_, err := p.gw.UpdateApiKey(ctx, &apigateway.UpdateApiKeyInput{ApiKey: aws.String(keep.id), PatchOperations: []types.PatchOperation{{
			Op: types.OpReplace, Path: aws.String("/enabled"), Value: aws.String("true"),
		}}})
		if err != nil {
			return changes, fmt.Errorf("enable the key of %s: %w", e.ID, err)
		}
		changes++
	}
	for _, other := range keep.plans {
		if other == plan {
			continue
		}
		if err := p.leave(ctx, other, keep.id); err != nil {
			return changes, err
		}
		changes++
	}
	if !slices.Contains(keep.plans, plan) {
		_, err := p.gw.CreateUsagePlanKey(ctx, &apigateway.CreateUsagePlanKeyInput{
			UsagePlanId: aws.String(plan), KeyId: aws.String(keep.id), KeyType: aws.String("API_KEY"),
		})
		var conflict *types.ConflictException
		if err != nil && !errors.As(err, &conflict) { // conflict: joined meanwhile
			return changes, fmt.Errorf("add the key of %s to usage plan %s: %w", e.ID, plan, err)
		}
		changes++
	}
	return changes, nil
}

// leave takes a key out of one usage plan; a key already out is fine.
func (p *Provisioner) leave(ctx context.Context, plan, keyID string) error {
	_, err := p.gw.DeleteUsagePlanKey(ctx, &apigateway.DeleteUsagePlanKeyInput{UsagePlanId: aws.String(plan), KeyId: aws.String(keyID)})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("remove key %s from usage plan %s: %w", keyID, plan, err)
	}
	return nil
}

// deleteKey takes a key out of its plans, then deletes it; a key already gone is fine.
func (p *Provisioner) deleteKey(ctx context.Context, h held) error {
	for _, plan := range h.plans {
		if err := p.leave(ctx, plan, h.id); err != nil {
			return err
		}
	}
	_, err := p.gw.DeleteApiKey(ctx, &apigateway.DeleteApiKeyInput{ApiKey: aws.String(h.id)})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("delete key %s (%s): %w", h.id, h.name, err)
	}
	return nil
}

func isNotFound(err error) bool {
	var nf *types.NotFoundException
	return errors.As(err, &nf)
}

// listKeys returns the keys whose name starts with prefix (nameQuery narrows the listing where
// API Gateway supports it; the names are compared here either way).
func (p *Provisioner) listKeys(ctx context.Context, nameQuery, prefix string) ([]held, error) {
	var out []held
	in := &apigateway.GetApiKeysInput{IncludeValues: aws.Bool(true), Limit: aws.Int32(500)}
	if nameQuery != "" {
		in.NameQuery = aws.String(nameQuery)
	}
	for {
		page, err := p.gw.GetApiKeys(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("list API keys: %w", err)
		}
		for _, k := range page.Items {
			if name := aws.ToString(k.Name); strings.HasPrefix(name, prefix) {
				out = append(out, held{id: aws.ToString(k.Id), name: name, value: aws.ToString(k.Value), enabled: k.Enabled})
			}
		}
		if aws.ToString(page.Position) == "" || len(page.Items) == 0 {
			return out, nil
		}
		in.Position = page.Position
	}
}

// heldByName returns the keys named name, each with the plans of ours it is in.
func (p *Provisioner) heldByName(ctx context.Context, name string) ([]held, error) {
	all, err := p.listKeys(ctx, name, name)
	if err != nil {
		return nil, err
	}
	var hs []held
	for _, h := range all {
		if h.name != name {
			continue // a longer name with this one as its prefix
		}
		for _, plan := range p.planIDs {
			_, err := p.gw.GetUsagePlanKey(ctx, &apigateway.GetUsagePlanKeyInput{UsagePlanId: aws.String(plan), KeyId: aws.String(h.id)})
			switch {
			case err == nil:
				h.plans = append(h.plans, plan)
			case !isNotFound(err):
				return nil, fmt.Errorf("read usage plan %s for key %s: %w", plan, h.id, err)
			}
		}
		hs = append(hs, h)
	}
	return hs, nil
}

// planMembers returns, per key id, the plans of ours it is in.
func (p *Provisioner) planMembers(ctx context.Context) (map[string][]string, error) {
	out := map[string][]string{}
	for _, plan := range p.planIDs {
		in := &apigateway.GetUsagePlanKeysInput{UsagePlanId: aws.String(plan), Limit: aws.Int32(500)}
		for {
			page, err := p.gw.GetUsagePlanKeys(ctx, in)
			if err != nil {
				return nil, fmt.Errorf("list the keys of usage plan %s: %w", plan, err)
			}
			for _, k := range page.Items {
				out[aws.ToString(k.Id)] = append(out[aws.ToString(k.Id)], plan)
			}
			if aws.ToString(page.Position) == "" || len(page.Items) == 0 {
				break
			}
			in.Position = page.Position
		}
	}
	return out, nil
}

// SyncEvent starts a sync when invoked with {"action":"sync"}.
type SyncEvent struct {
	Action string `json:"action"`
}

// SyncAction is SyncEvent's one action.
const SyncAction = "sync"

// SyncResult says what a sync found and did.
type SyncResult struct {
	Owners  int `json:"owners"`  // channel entities that own a key
	Changes int `json:"changes"` // keys created, enabled, deleted, moved between plans
	Removed int `json:"removed"` // keys of owners that no longer exist, deleted
}

// Sync converges every owner of the channel: the platform, every distributor and partner. It
// reads API Gateway's keys and plans once, then changes only the difference. A key under the
// prefix whose owner is gone is deleted only when its value is the one this deployment derives
// for that id, the proof that it is this deployment's. It goes on past an owner that fails and
// reports every failure.
func (p *Provisioner) Sync(ctx context.Context) (SyncResult, error) {
	var owners []*hierarchy.Entity
	switch pl, err := p.entities.GetEntity(ctx, access.PlatformID); {
	case err == nil:
		owners = append(owners, pl)
	case !apperr.Is(err, apperr.NotFound):
		return SyncResult{}, fmt.Errorf("read the platform: %w", err)
	}
	for _, t := range []access.EntityType{access.Distributor, access.Partner} {
		es, err := p.entities.ListSubtree(ctx, t, access.PlatformPath)
		if err != nil {
			return SyncResult{}, fmt.Errorf("list the %ss: %w", t, err)
		}
		owners = append(owners, es...)
	}
	keys, err := p.listKeys(ctx, "", p.cfg.KeyPrefix)
	if err != nil {
		return SyncResult{}, err
	}
	members, err := p.planMembers(ctx)
	if err != nil {
		return SyncResult{}, err
	}
	byName := map[string][]held{}
	for _, h := range keys {
		h.plans = members[h.id]
		byName[h.name] = append(byName[h.name], h)
	}
	res := SyncResult{Owners: len(owners)}
	var errs []error
	for _, e := range owners {
		name := p.KeyName(e.ID)
		n, err := p.converge(ctx, usagekeys.Entity{ID: e.ID, Type: e.Type, Tier: e.Tier}, byName[name])
		res.Changes += n
		if err != nil {
			errs = append(errs, err)
		}
		delete(byName, name)
	}
	for name, hs := range byName {
		id := strings.TrimPrefix(name, p.cfg.KeyPrefix)
		for _, h := range hs {
			if h.value != p.keys.Value(id) {
				continue // not derived by this deployment: not ours to delete
			}
			if err := p.deleteKey(ctx, h); err != nil {
				errs = append(errs, err)
				continue
			}
			res.Removed++
		}
	}
	return res, errors.Join(errs...)
}

// change is what one stream record asks for.
type change struct {
	entity usagekeys.Entity
	remove bool
}

// changeOf reads a stream record; ok is false when it changes no key: not a channel entity's
// item, or a modification that kept the tier (counters, names, suspensions).
func changeOf(r events.DynamoDBEventRecord) (change, bool) {
	img := r.Change.NewImage
	if r.EventName == string(events.DynamoDBOperationTypeRemove) {
		img = r.Change.OldImage
	}
	e, ok := tablestore.EntityFromImage(img)
	if !ok || !usagekeys.Owns(e.Type) {
		return change{}, false
	}
	c := change{entity: usagekeys.Entity{ID: e.ID, Type: e.Type, Tier: e.Tier}}
	switch events.DynamoDBOperationType(r.EventName) {
	case events.DynamoDBOperationTypeRemove:
		c.remove = true
	case events.DynamoDBOperationTypeModify:
		if old, ok := tablestore.EntityFromImage(r.Change.OldImage); ok && usagekeys.Plan(usagekeys.Entity{Type: old.Type, Tier: old.Tier}) == usagekeys.Plan(c.entity) {
			return change{}, false
		}
	case events.DynamoDBOperationTypeInsert:
	default:
		return change{}, false
	}
	return c, true
}

// HandleStream is the handler of the table stream's event source mapping (ReportBatchItemFailures
// enabled). It applies the records in order; at the first that fails it stops and reports that
// record's sequence number, so the stream retries from it (every step being idempotent, the
// records before it are not redone wrongly). It never returns an error.
func (p *Provisioner) HandleStream(ctx context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
	start := time.Now()
	res := events.DynamoDBEventResponse{BatchItemFailures: []events.DynamoDBBatchItemFailure{}}
	applied, changes, ignored := 0, 0, 0
	for _, r := range ev.Records {
		c, ok := changeOf(r)
		if !ok {
			ignored++
			continue
		}
		var n int
		var err error
		if c.remove {
			n, err = p.Remove(ctx, c.entity.ID)
		} else {
			n, err = p.Ensure(ctx, c.entity)
		}
		if err != nil {
			p.log.ErrorContext(ctx, "usage keys: record failed", "sequenceNumber", r.Change.SequenceNumber, "entity", c.entity.ID, "err", err)
			res.BatchItemFailures = []events.DynamoDBBatchItemFailure{{ItemIdentifier: r.Change.SequenceNumber}}
			break
		}
		applied++
		changes += n
	}
	p.log.InfoContext(ctx, "usage keys batch", "records", len(ev.Records), "applied", applied, "changes", changes, "ignored", ignored,
		"failed", len(res.BatchItemFailures), "ms", time.Since(start).Milliseconds())
	return res, nil
}

// Handle is the Lambda entry point: a stream batch (it has "Records") goes to HandleStream and
// answers its events.DynamoDBEventResponse; {"action":"sync"} runs Sync and answers its
// SyncResult, or fails with every owner's error. Anything else is an error.
func (p *Provisioner) Handle(ctx context.Context, raw json.RawMessage) (any, error) {
	var probe struct {
		Records json.RawMessage `json:"Records"`
		Action  string          `json:"action"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, fmt.Errorf("usage keys: unreadable event: %w", err)
	}
	switch {
	case probe.Records != nil:
		var ev events.DynamoDBEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, fmt.Errorf("usage keys: unreadable stream batch: %w", err)
		}
		return p.HandleStream(ctx, ev)
	case probe.Action == SyncAction:
		res, err := p.Sync(ctx)
		p.log.InfoContext(ctx, "usage keys sync", "owners", res.Owners, "changes", res.Changes, "removed", res.Removed, "err", err)
		return res, err
	}
	return nil, errors.New(`usage keys: not a stream batch nor {"action":"sync"}`)
}
