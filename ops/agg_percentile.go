package ops

// aggSelect returns the k-th smallest (0-based) of vals, reordering vals.
// It is Hoare's quickselect with a median-of-three pivot: O(n) expected,
// deterministic, no allocation. vals must hold no NaN and 0 <= k < len(vals).
func aggSelect(vals []float64, k int) float64 {
	lo, hi := 0, len(vals)-1
	for hi > lo {
		if hi-lo < 16 { // insertion sort the rest
			for i := lo + 1; i <= hi; i++ {
				for j := i; j > lo && vals[j] < vals[j-1]; j-- {
					vals[j], vals[j-1] = vals[j-1], vals[j]
				}
			}
			break
		}
		mid := lo + (hi-lo)/2
		if vals[mid] < vals[lo] {
			vals[mid], vals[lo] = vals[lo], vals[mid]
		}
		if vals[hi] < vals[lo] {
			vals[hi], vals[lo] = vals[lo], vals[hi]
		}
		if vals[hi] < vals[mid] {
			vals[hi], vals[mid] = vals[mid], vals[hi]
		}
		pivot := vals[mid]
		i, j := lo, hi
		for i <= j {
			for vals[i] < pivot {
				i++
			}
			for vals[j] > pivot {
				j--
			}
			if i <= j {
				vals[i], vals[j] = vals[j], vals[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return vals[k]
		}
	}
	return vals[k]
}
