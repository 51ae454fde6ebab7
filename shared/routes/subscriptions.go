package routes

import (
	"net/http"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/httpapi"
	"github.com/channelbilling/cms/shared/subscriptions"
)

// Subscriptions registers /api/v1/subscriptions (SPEC 9).
func Subscriptions(api *httpapi.API, svc *subscriptions.Service) {
	const base, fn, tag = "/api/v1/subscriptions", FnSubscriptions, "subscriptions"
	api.Handle(httpapi.Route{Method: http.MethodGet, Path: base, Function: fn, Permission: access.SubscriptionsList, Tag: tag, List: true,
		Summary: "List subscriptions in your subtree", Result: subscriptions.Subscription{},
		Query: []httpapi.Param{
			{Name: "tenantId", Description: "Only this tenant's subscriptions."},
			{Name: "parent", Description: "An entity id: the subscriptions of every tenant in its subtree."},
			{Name: "planId", Description: "Only subscriptions to this plan."},
			{Name: "status", Description: "active or cancelled (as of now)."},
		}, Fields: listFields(subscriptions.ListFields)},
		func(req *httpapi.Request) (httpapi.Response, error) {
			q, after, err := req.ListQuery("tenantId", "parent", "planId", "status")
			if err != nil {
				return httpapi.Response{}, err
			}
			items, next, err := svc.List(req.Context(), req.Principal, q, after)
			if err != nil {
				return httpapi.Response{}, err
			}
			if q.PageSize == 0 {
				q.PageSize = 50
			}
			return req.Page(items, q, next), nil
		})
	api.Handle(httpapi.Route{Method: http.MethodPost, Path: base, Function: fn, Permission: access.SubscriptionsCreate, Tag: tag, Status: http.StatusCreated,
		Summary: "Subscribe a tenant to a published plan (customer.created on its first subscription)",
		Body:    subscriptions.CreateInput{}, Result: subscriptions.Subscription{}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			var in subscriptions.CreateInput
			if err := req.Decode(&in); err != nil {
				return httpapi.Response{}, err
			}
			s, err := svc.Create(req.Context(), req.Principal, in)
			return httpapi.Response{Data: s}, err
		})
	api.Handle(httpapi.Route{Method: http.MethodGet, Path: base + "/{id}", Function: fn, Permission: access.SubscriptionsRead, Tag: tag,
		Summary: "Get a subscription", Result: subscriptions.Subscription{}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			s, err := svc.Get(req.Context(), req.Principal, req.PathValue("id"))
			return httpapi.Response{Data: s}, err
		})
	api.Handle(httpapi.Route{Method: http.MethodPut, Path: base + "/{id}", Function: fn, Permission: access.SubscriptionsUpdate, Tag: tag,
		Summary: "Change the seats and/or the plan (customer.upgraded on a plan change)",
		Body:    subscriptions.UpdateInput{}, Result: subscriptions.Subscription{}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			var in subscriptions.UpdateInput
			if err := req.Decode(&in); err != nil {
				return httpapi.Response{}, err
			}
			s, err := svc.Update(req.Context(), req.Principal, req.PathValue("id"), in)
			return httpapi.Response{Data: s}, err
		})
	api.Handle(httpapi.Route{Method: http.MethodDelete, Path: base + "/{id}", Function: fn, Permission: access.SubscriptionsCancel, Tag: tag,
		Summary: "Cancel a subscription now or at the end of the period (customer.cancelled)", Result: subscriptions.Subscription{},
		Query: []httpapi.Param{{Name: "at", Description: "now (default) or period_end."}}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			s, err := svc.Cancel(req.Context(), req.Principal, req.PathValue("id"), req.URL.Query().Get("at"))
			return httpapi.Response{Data: s}, err
		})
	api.Handle(httpapi.Route{Method: http.MethodPut, Path: base + "/{id}/license-key", Function: fn, Permission: access.SubscriptionsLicense, Tag: tag,
		Summary: "Set or replace the license key", Body: subscriptions.LicenseKeyInput{}, Result: subscriptions.Subscription{}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			var in subscriptions.LicenseKeyInput
			if err := req.Decode(&in); err != nil {
				return httpapi.Response{}, err
			}
			s, err := svc.SetLicenseKey(req.Context(), req.Principal, req.PathValue("id"), in)
			return httpapi.Response{Data: s}, err
		})
	api.Handle(httpapi.Route{Method: http.MethodGet, Path: base + "/{id}/history", Function: fn, Permission: access.SubscriptionsHistory, Tag: tag, List: true,
		Summary: "Every change of a subscription: {at, actor, action, before, after}", Result: subscriptions.HistoryEntry{},
		Fields: listFields(subscriptions.HistoryFields)},
		func(req *httpapi.Request) (httpapi.Response, error) {
			q, after, err := req.ListQuery()
			if err != nil {
				return httpapi.Response{}, err
			}
			items, next, err := svc.History(req.Context(), req.Principal, req.PathValue("id"), q, after)
			if err != nil {
				return httpapi.Response{}, err
			}
			if q.PageSize == 0 {
				q.PageSize = 50
			}
			return req.Page(items, q, next), nil
		})
}
