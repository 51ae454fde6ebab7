package routes

import (
	"net/http"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/billing"
	"github.com/channelbilling/cms/shared/httpapi"
)

// Billing registers the billing runs and the billing summary (SPEC 7, 11).
func Billing(api *httpapi.API, svc *billing.Service) {
	const fn, tag = FnBilling, "billing"
	api.Handle(httpapi.Route{Method: http.MethodPost, Path: "/api/v1/billing/runs", Function: fn, Permission: access.BillingRunsCreate, Tag: tag,
		Status: http.StatusAccepted, Body: billing.RunInput{}, Result: billing.Run{},
		Summary: "Start a billing run of a closed period (422 period_not_closed otherwise): one invoice per tenant with a subscription active in it; idempotent"},
		func(req *httpapi.Request) (httpapi.Response, error) {
			var in billing.RunInput
			if err := req.Decode(&in); err != nil {
				return httpapi.Response{}, err
			}
			r, err := svc.StartRun(req.Context(), req.Principal, in)
			return httpapi.Response{Data: r}, err
		})
	api.Handle(httpapi.Route{Method: http.MethodGet, Path: "/api/v1/billing/runs/{id}", Function: fn, Permission: access.BillingRunsRead, Tag: tag,
		Summary: "A billing run's progress", Result: billing.Run{}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			r, err := svc.GetRun(req.Context(), req.Principal, req.PathValue("id"))
			return httpapi.Response{Data: r}, err
		})
	api.Handle(httpapi.Route{Method: http.MethodGet, Path: "/api/v1/billing/summary", Function: fn, Permission: access.BillingSummaryRead, Tag: tag,
		Summary: "Invoiced totals of a tenant, a subscription or a channel entity's subtree for a period", Result: billing.Summary{},
		Query: []httpapi.Param{
			{Name: "tenantId", Description: "A tenant of your subtree."},
			{Name: "subscriptionId", Description: "A subscription of your subtree."},
			{Name: "entityId", Description: "A channel entity of your subtree (default: your scope)."},
			{Name: "period", Description: "YYYY-MM; default the last period that ended."},
		}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			v := req.URL.Query()
			s, err := svc.Summary(req.Context(), req.Principal, billing.SummaryInput{TenantID: v.Get("tenantId"),
				SubscriptionID: v.Get("subscriptionId"), EntityID: v.Get("entityId"), Period: v.Get("period")})
			return httpapi.Response{Data: s}, err
		})
}

// Invoices registers the invoice routes (SPEC 7.1).
func Invoices(api *httpapi.API, svc *billing.Service) {
	const base, fn, tag = "/api/v1/invoices", FnInvoices, "invoices"
	api.Handle(httpapi.Route{Method: http.MethodGet, Path: base, Function: fn, Permission: access.InvoicesList, Tag: tag, List: true,
		Summary: "List the invoices of your subtree", Result: billing.Invoice{},
		Query: []httpapi.Param{
			{Name: "tenantId", Description: "Only this tenant's invoices (all periods unless period is given)."},
			{Name: "period", Description: "YYYY-MM; default the last period that ended (without tenantId)."},
		}, Fields: listFields(billing.InvoiceFields)},
		func(req *httpapi.Request) (httpapi.Response, error) {
			q, after, err := req.ListQuery("tenantId", "period")
			if err != nil {
				return httpapi.Response{}, err
			}
			items, next, err := svc.ListInvoices(req.Context(), req.Principal, &q, after)
			if err != nil {
				return httpapi.Response{}, err
			}
			return req.Page(items, q, next), nil
		})
	api.Handle(httpapi.Route{Method: http.MethodGet, Path: base + "/{id}", Function: fn, Permission: access.InvoicesRead, Tag: tag,
		Summary: "An invoice with its lines, tiers and total", Result: billing.Invoice{}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			inv, err := svc.GetInvoice(req.Context(), req.Principal, req.PathValue("id"))
			return httpapi.Response{Data: inv}, err
		})
}

// Commissions registers the commission routes (SPEC 12).
func Commissions(api *httpapi.API, svc *billing.Service) {
	const base, fn, tag = "/api/v1/commissions", FnCommissions, "commissions"
	params := []httpapi.Param{
		{Name: "entityId", Description: "A distributor or partner of your subtree (default: your scope)."},
		{Name: "start_date", Description: "First period, YYYY-MM (default the last period that ended)."},
		{Name: "end_date", Description: "Last period, YYYY-MM (default start_date)."},
		{Name: "customer_id", Description: "Only this tenant."},
	}
	api.Handle(httpapi.Route{Method: http.MethodGet, Path: base + "/summary", Function: fn, Permission: access.CommissionsRead, Tag: tag,
		Summary: "What a distributor or partner earned over a range of periods: revenue, cost, commission, per tenant",
		Result:  billing.CommissionSummary{}, Query: params},
		func(req *httpapi.Request) (httpapi.Response, error) {
			v := req.URL.Query()
			s, err := svc.CommissionSummary(req.Context(), req.Principal, billing.CommissionQuery{EntityID: v.Get("entityId"),
				StartDate: v.Get("start_date"), EndDate: v.Get("end_date"), CustomerID: v.Get("customer_id")})
			return httpapi.Response{Data: s}, err
		})
	api.Handle(httpapi.Route{Method: http.MethodGet, Path: base, Function: fn, Permission: access.CommissionsRead, Tag: tag, List: true,
		Summary: "Commission lines (per entity, tenant and period) under an entity of your subtree", Result: billing.CommissionLine{}, Query: params,
		Fields: listFields(billing.CommissionFields)},
		func(req *httpapi.Request) (httpapi.Response, error) {
			q, after, err := req.ListQuery("entityId", "start_date", "end_date", "customer_id")
			if err != nil {
				return httpapi.Response{}, err
			}
			items, next, err := svc.ListCommissions(req.Context(), req.Principal, &q, after)
			if err != nil {
				return httpapi.Response{}, err
			}
			return req.Page(items, q, next), nil
		})
}
