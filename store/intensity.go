package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// intensityPrefix holds the grid intensity a site observed, one record per
// region and hour: ihist/<len(region)>:<region><unix hour, 8 bytes big
// endian> -> JSON IntensityHour. The big-endian hour keeps a region's
// records in time order, so a range is one scan and pruning stops at the
// first record it keeps.
const intensityPrefix = "ihist/"

// IntensityKeep is how long observed intensity is kept: five weeks, enough
// for a forecaster's four weeks of fitting plus its two-week profile.
const IntensityKeep = 35 * 24 * time.Hour

func intensityRegionPrefix(region string) []byte {
	return []byte(intensityPrefix + strconv.Itoa(len(region)) + ":" + region)
}

func intensityKey(region string, hour time.Time) []byte {
	k := intensityRegionPrefix(region)
	return binary.BigEndian.AppendUint64(k, uint64(hour.Unix()/3600))
}

// IntensityHour is the time-weighted mean intensity observed over part or
// all of one hour of one region.
type IntensityHour struct {
	// Start is the hour's start (UTC).
	Start time.Time `json:"start"`
	// Mean is the time-weighted mean of the values observed, in gCO2/kWh.
	Mean float64 `json:"mean"`
	// Seconds is how much of the hour the observed values covered.
	Seconds float64 `json:"seconds"`
	// Covered is the end of the latest interval added: a value observed
	// again for a span already covered is not counted twice.
	Covered time.Time `json:"covered"`
	// Signal is the caller's code for what the values measure.
	Signal uint8 `json:"signal"`
	// Source names where the latest value came from.
	Source string `json:"source"`
}

// AddIntensity records that region's intensity was v over [start, end),
// folding it into the hourly means: the part of the span an hour's record
// already covers is skipped, so the same value observed twice counts once.
// Records older than IntensityKeep before end are deleted. The writes are
// not synced: a power cut may lose the newest observations, never the
// store's consistency.
func (s *Store) AddIntensity(region string, start, end time.Time, v float64, signal uint8, source string) error {
	if !end.After(start) {
		return fmt.Errorf("add intensity for %s: empty span %s..%s", region, start.Format(time.RFC3339), end.Format(time.RFC3339))
	}
	err := s.write(func(txn *badger.Txn) error {
		for h := start.UTC().Truncate(time.Hour); h.Before(end); h = h.Add(time.Hour) {
			key := intensityKey(region, h)
			rec := IntensityHour{Start: h}
			item, err := txn.Get(key)
			switch {
			case err == nil:
				if err := item.Value(func(b []byte) error { return json.Unmarshal(b, &rec) }); err != nil {
					return fmt.Errorf("hour %s: %w", h.Format(time.RFC3339), err)
				}
			case !errors.Is(err, badger.ErrKeyNotFound):
				return err
			}
			lo := maxTime(start, h)
			if rec.Covered.After(lo) {
				lo = rec.Covered
			}
			hi := minTime(end, h.Add(time.Hour))
			w := hi.Sub(lo).Seconds()
			if w <= 0 {
				continue
			}
			rec.Mean = (rec.Mean*rec.Seconds + v*w) / (rec.Seconds + w)
			rec.Seconds += w
			rec.Covered, rec.Signal, rec.Source = hi, signal, source
			b, err := json.Marshal(rec)
			if err != nil {
				return err
			}
			if err := txn.Set(key, b); err != nil {
				return err
			}
		}
		return pruneIntensity(txn, region, end.Add(-IntensityKeep))
	})
	if err != nil {
		return fmt.Errorf("add intensity for %s: %w", region, err)
	}
	return nil
}

// pruneIntensity deletes region's records of hours that start before cutoff.
func pruneIntensity(txn *badger.Txn, region string, cutoff time.Time) error {
	prefix := intensityRegionPrefix(region)
	stop := intensityKey(region, cutoff.UTC().Truncate(time.Hour))
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	var old [][]byte
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().KeyCopy(nil)
		if string(k) >= string(stop) {
			break
		}
		old = append(old, k)
	}
	it.Close()
	for _, k := range old {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// IntensityHistory returns region's hourly records whose hour overlaps
// [from, to), in time order.
func (s *Store) IntensityHistory(region string, from, to time.Time) ([]IntensityHour, error) {
	var out []IntensityHour
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: intensityRegionPrefix(region), PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		stop := string(intensityKey(region, to.UTC().Add(time.Hour-1).Truncate(time.Hour)))
		for it.Seek(intensityKey(region, from.UTC().Truncate(time.Hour))); it.Valid(); it.Next() {
			if string(it.Item().Key()) >= stop {
				break
			}
			var rec IntensityHour
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &rec) }); err != nil {
				return fmt.Errorf("%s: %w", it.Item().Key(), err)
			}
			out = append(out, rec)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("intensity history for %s: %w", region, err)
	}
	return out, nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
