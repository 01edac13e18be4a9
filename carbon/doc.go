// Package carbon decides when and where deferrable work should run so that
// it emits the least carbon before its deadline, and accounts for what it
// emitted against what running at once would have emitted.
//
// The pieces, each usable alone:
//
//   - [Reading] is one labelled intensity value: its interval, gCO2/kWh,
//     whether it was measured, forecast or assumed, whether it is an average
//     or a marginal signal, and the source it came from. A [Provider] returns
//     readings for a region (see package carbon/provider for the trace file,
//     WattTime, Electricity Maps and UK National Grid clients).
//   - [Cache] adds a TTL in front of a provider and [Chain] falls back from a
//     live provider to its last forecast, a trace, and a constant, keeping the
//     label of whichever answered.
//   - [Curve] turns readings of any interval, fixed or changing, into a
//     regular grid whose exact averages over any span the planner reads.
//   - [SeasonalRegression] (the default), [SeasonalBlend] and
//     [SeasonalNaive] forecast from history when a provider has no
//     forecast; they read only what was known at the decision time.
//   - [Planner] places jobs on (site, start) pairs: lowest expected emissions
//     (net of reused heat) over the runtime, within the deadline, without
//     overbooking a slot, re-planned whenever a forecast changes. Its clock is
//     injected.
//   - [Ledger] turns CPU seconds and GPU joules into energy and emissions per
//     app and site, next to the run-now counterfactual, and exports them as
//     Prometheus metrics.
//
// Units: intensity in gCO2/kWh (gCO2eq where the source says so), energy in
// joules or kWh as named, emissions in grams.
package carbon
