package cputime

// thread says whether CPU times come from a per-thread clock.
const thread = true
