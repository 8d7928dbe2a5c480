package main

import (
	"fmt"
	"strconv"
	"strings"
)

// byteSize is a flag value in bytes that also takes the binary suffixes
// KiB, MiB and GiB (and K, M, G for the same).
type byteSize int64

func (b *byteSize) String() string {
	n := int64(*b)
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return strconv.FormatInt(n, 10)
}

func (b *byteSize) Set(s string) error {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return fmt.Errorf("%q is not a size in bytes (e.g. 4194304, 4MiB, 512KiB)", s)
	}
	*b = byteSize(n * mult)
	return nil
}

// byteSizeOf is n as a byteSize, for messages.
func byteSizeOf(n int64) *byteSize {
	b := byteSize(n)
	return &b
}
