package routes

import (
	"errors"
	"net/http"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/httpapi"
	"github.com/channelbilling/cms/shared/listing"
	"github.com/channelbilling/cms/shared/usage"
)

// UsageRejected is one rejected record of POST /usage: its index in records, its id, and every
// reason.
type UsageRejected struct {
	Index  int                 `json:"index"`
	ID     string              `json:"id"`
	Errors []httpapi.ErrorBody `json:"errors"`
}

// UsageAccepted is the answer of POST /usage (202): how many records were counted now, how many
// had been counted before (same tenant and id, any channel), and the rejected ones. A record
// that could not be counted for a transient reason is rejected with code "retry" or
// "in_progress": send it again.
type UsageAccepted struct {
	Accepted   int             `json:"accepted"`
	Duplicates int             `json:"duplicates"`
	Rejected   []UsageRejected `json:"rejected"`
}

// UsageBatch documents the body of POST /usage (the route decodes it with usage.DecodeBatch,
// record by record, so that one bad record is rejected alone).
type UsageBatch struct {
	Records []usage.Input `json:"records"`
}

// Usage registers /api/v1/usage (SPEC 10, 7.1).
func Usage(api *httpapi.API, svc *usage.Service) {
	const base, fn, tag = "/api/v1/usage", FnUsage, "usage"
	api.Handle(httpapi.Route{Method: http.MethodPost, Path: base, Function: fn, Permission: access.UsageIngest, Tag: tag,
		Status: http.StatusAccepted, BodyLimit: httpapi.UsageBodyLimit,
		Summary: "Push up to 1,000 usage records of tenants in your subtree; each is counted once per (tenantId, id) whatever the channel",
		Body:    UsageBatch{}, Result: UsageAccepted{}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			items, err := usage.DecodeBatch(req.Body)
			if err != nil {
				return httpapi.Response{}, err
			}
			rep := svc.Ingest(req.Context(), usage.Options{Source: usage.SourceAPI, Scope: req.Principal.ScopePath, Name: req.Principal.UserID}, items)
			if len(items) > 0 && rep.Retry == len(items) {
				// Nothing could be counted: the store is unavailable. A server error tells the client
				// to send the whole batch again (and an Idempotency-Key does not remember it).
				return httpapi.Response{}, apperr.Wrap(errors.New(rep.Outcomes[0].Errors[0].Message), "usage ingest")
			}
			out := UsageAccepted{Accepted: rep.Accepted, Duplicates: rep.Duplicates, Rejected: []UsageRejected{}}
			for i, o := range rep.Outcomes {
				if o.Status != usage.Rejected && o.Status != usage.Retry {
					continue
				}
				r := UsageRejected{Index: i, ID: o.ID, Errors: make([]httpapi.ErrorBody, 0, len(o.Errors))}
				for _, e := range o.Errors {
					r.Errors = append(r.Errors, httpapi.ErrorBody{Code: e.Code, Message: e.Message, Field: e.Field})
				}
				out.Rejected = append(out.Rejected, r)
			}
			return httpapi.Response{Data: out, Partial: rep.Retry > 0}, nil
		})
	api.Handle(httpapi.Route{Method: http.MethodGet, Path: base, Function: fn, Permission: access.UsageRead, Tag: tag, Paged: true,
		Summary: "The period's usage per subscription and SKU in your subtree, with the charge it would produce now (the tenant's price)",
		Result:  usage.Answer{},
		Query: []httpapi.Param{
			{Name: "period", Description: "YYYY-MM; default the current period."},
			{Name: "tenantId", Description: "Only this tenant's usage."},
			{Name: "subscriptionId", Description: "Only this subscription's usage."},
		}, Fields: listFields(usage.ListFields)},
		func(req *httpapi.Request) (httpapi.Response, error) {
			q, after, err := req.ListQuery("period", "tenantId", "subscriptionId")
			if err != nil {
				return httpapi.Response{}, err
			}
			if q.PageSize == 0 {
				q.PageSize = listing.DefaultPageSize
			}
			ans, next, err := svc.List(req.Context(), req.Principal, &q, after)
			if err != nil {
				return httpapi.Response{}, err
			}
			return req.Page(ans, q, next), nil
		})
}
