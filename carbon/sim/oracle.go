package sim

import (
	"container/heap"
	"math"
	"slices"
	"time"

	"github.com/tern-edge/tern/carbon"
)

// oracle returns the best placement knowing the actual future. Without
// capacity every job is independent, and the planner given the actual
// intensity picks each one's best (site, start), so that is exact. With
// capacity the jobs compete for slots and placing them one by one is not
// optimal: when every job fits in one grid slot, the oracle solves the
// assignment of jobs to site-slots exactly as a min-cost flow; otherwise
// it falls back to the planner (and says so with exact = false).
func oracle(cfg Config, sites []simSite, jobs []carbon.Job) (o Outcome, exact bool, err error) {
	limited := slices.ContainsFunc(sites, func(s simSite) bool { return s.Capacity > 0 })
	oneSlot := !slices.ContainsFunc(jobs, func(j carbon.Job) bool { return j.Runtime > cfg.Step })
	if !limited || !oneSlot {
		o, err = replay("oracle", cfg, sites, jobs, nil)
		return finish(cfg, sites, o), !limited, err
	}
	return finish(cfg, sites, assignExact(cfg, sites, jobs)), true, nil
}

// overflowCost is added to the cost of running a job above capacity, so
// that the assignment first minimises the jobs that do and then grams.
const overflowCost = 1e9

// flow is a min-cost flow network solved by successive shortest paths.
// Nodes are jobs, site-slots, one overflow node and the sink; each job
// sends one unit, to a slot it may start in (cost: its actual grams there)
// or to the overflow node (running at once at its origin, above capacity).
// Jobs are added one at a time in arrival order and each is routed along a
// shortest path in the residual network, which may move earlier jobs; with
// node potentials keeping reduced costs non-negative, Dijkstra finds the
// path, and it stops at the sink, so a path through free slots nearby
// costs little. The flow after the last job is a min-cost flow: no
// residual cycle has negative cost.
type flow struct {
	head []int32 // first edge of each node, -1 for none
	next []int32
	to   []int32
	cap  []int32
	cost []float64
	pot  []float64 // potential of each node, less base
	base float64   // added to every potential (raised lazily after a search)
	dist []float64
	seen []int32 // search stamp of dist
	done []bool
	prev []int32 // edge into each node on the search tree
}

func (f *flow) node(pot float64) int32 {
	f.head = append(f.head, -1)
	f.pot = append(f.pot, pot-f.base)
	f.dist = append(f.dist, 0)
	f.seen = append(f.seen, -1)
	f.done = append(f.done, false)
	f.prev = append(f.prev, -1)
	return int32(len(f.head) - 1)
}

func (f *flow) edge(u, v, c int32, cost float64) {
	for _, e := range [2]struct {
		a, b, c int32
		w       float64
	}{{u, v, c, cost}, {v, u, 0, -cost}} {
		f.to = append(f.to, e.b)
		f.cap = append(f.cap, e.c)
		f.cost = append(f.cost, e.w)
		f.next = append(f.next, f.head[e.a])
		f.head[e.a] = int32(len(f.to) - 1)
	}
}

// route sends one unit from src to sink along a shortest residual path
// and updates the potentials.
func (f *flow) route(src, sink, stamp int32) {
	h := &distHeap{}
	f.seen[src], f.dist[src], f.done[src] = stamp, 0, false
	heap.Push(h, distItem{0, src})
	var visited []int32
	for h.Len() > 0 {
		it := heap.Pop(h).(distItem)
		u := it.n
		if f.done[u] && f.seen[u] == stamp || it.d > f.dist[u] {
			continue
		}
		f.done[u] = true
		visited = append(visited, u)
		if u == sink {
			break
		}
		for e := f.head[u]; e >= 0; e = f.next[e] {
			if f.cap[e] == 0 {
				continue
			}
			v := f.to[e]
			d := it.d + max(0, f.cost[e]+f.pot[u]-f.pot[v])
			if f.seen[v] != stamp || (!f.done[v] && d < f.dist[v]) {
				f.seen[v], f.dist[v], f.done[v], f.prev[v] = stamp, d, false, e
				heap.Push(h, distItem{d, v})
			}
		}
	}
	dt := f.dist[sink]
	// Every node's potential rises by min(dist, dt): the visited ones by
	// their distance, the rest (dist ≥ dt) through base.
	for _, v := range visited {
		f.pot[v] += f.dist[v] - dt
		f.done[v] = false
	}
	f.base += dt
	for v := sink; v != src; {
		e := f.prev[v]
		f.cap[e]--
		f.cap[e^1]++
		v = f.to[e^1]
	}
}

type distItem struct {
	d float64
	n int32
}

type distHeap []distItem

func (h distHeap) Len() int           { return len(h) }
func (h distHeap) Less(i, j int) bool { return h[i].d < h[j].d }
func (h distHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *distHeap) Push(x any)        { *h = append(*h, x.(distItem)) }
func (h *distHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// assignExact places jobs that each fit in one grid slot on site-slots
// with capacity, minimising first the jobs run above capacity and then the
// actual grams. Candidate starts are the grid points from arrival (plus
// the transfer) to the latest start meeting the deadline.
func assignExact(cfg Config, sites []simSite, jobs []carbon.Job) Outcome {
	step := cfg.Step
	byName := map[string]int{}
	for i, s := range sites {
		byName[s.Name] = i
	}
	transfer := func(from, to int) time.Duration {
		if from == to {
			return 0
		}
		if d, ok := cfg.Transfers[[2]string{sites[from].Name, sites[to].Name}]; ok {
			return d
		}
		return sites[to].Transfer
	}
	f := &flow{}
	sink := f.node(0)
	over := f.node(0)
	f.edge(over, sink, int32(len(jobs)), 0)
	type slotKey struct {
		site int
		k    int64
	}
	slotNode := map[slotKey]int32{}
	slotOfNode := map[int32]slotKey{}
	jobNode := make([]int32, len(jobs))
	for ji, j := range jobs {
		origin := byName[j.Origin]
		type cand struct {
			n    int32
			cost float64
		}
		var cands []cand
		for si, s := range sites {
			if len(j.Regions) > 0 && !slices.Contains(j.Regions, s.Name) {
				continue
			}
			tr := transfer(origin, si)
			earliest, latest := j.Arrival.Add(tr), j.Deadline.Add(-j.Runtime-tr)
			t := earliest.Truncate(step)
			if t.Before(earliest) {
				t = t.Add(step)
			}
			for ; !t.After(latest); t = t.Add(step) {
				if slotOf(t.Add(j.Runtime-1), step) != slotOf(t, step) {
					continue
				}
				g, ok := emissions(s, j, t)
				if !ok {
					continue
				}
				key := slotKey{si, slotOf(t, step)}
				n, ok := slotNode[key]
				if !ok {
					n = f.node(f.pot[sink] + f.base)
					c := s.Capacity
					if c <= 0 {
						c = len(jobs)
					}
					f.edge(n, sink, int32(c), 0)
					slotNode[key], slotOfNode[n] = n, key
				}
				cands = append(cands, cand{n, g})
			}
		}
		g0, _ := emissions(sites[origin], j, j.Arrival)
		cands = append(cands, cand{over, overflowCost + g0})
		// The job's potential keeps the reduced cost of its edges ≥ 0.
		pj := math.Inf(-1)
		for _, c := range cands {
			pj = max(pj, f.pot[c.n]+f.base-c.cost)
		}
		jn := f.node(pj)
		for _, c := range cands {
			f.edge(jn, c.n, 1, c.cost)
		}
		jobNode[ji] = jn
		f.route(jn, sink, int32(ji))
	}
	o := Outcome{Policy: "oracle"}
	for ji, j := range jobs {
		for e := f.head[jobNode[ji]]; e >= 0; e = f.next[e] {
			if e&1 != 0 || f.cap[e] != 0 {
				continue // a reverse edge, or unused
			}
			if v := f.to[e]; v == over {
				o.add(sites[byName[j.Origin]], j, j.Arrival, carbon.ReasonNoCapacity)
			} else {
				key := slotOfNode[v]
				o.add(sites[key.site], j, time.Unix(0, key.k*int64(step)).UTC(), "oracle")
			}
			break
		}
	}
	return o
}
