/* Categorical focal cross-entropy from logits with its gradient, in one call.
 *
 * Included after softmax_ce_impl.h (whose helpers it uses: row_max, row_rest,
 * scaled_rest, scale_exps, exp_pd, power_pd) by softmax_focal_grad_base.c and
 * softmax_focal_grad_avx2.c, with PL_NAME giving the build's suffix. The loss
 * is that of pl_focal_softmax_ce_rows (softmax_ce_impl.h); the gradient:
 *
 *   L = sum_j c'_j, c'_j = a_j t_j w_j l_j, w_j = (1 - p_j)^gamma, l_j = -log p_j,
 *   dL/dx_k = p_k C - c_k,  c_j = a_j t_j w_j (gamma p_j l_j / (1 - p_j) + 1),  C = sum_j c_j
 *
 * (gamma = 0, a = 1: c = t and the gradient is p T - t, softmax cross-entropy's).
 * Per row: pass 1 (row_max) finds m, pass 2 (row_rest) a, S' and the
 * float32 exps into the gradient row; pass 3 computes c_j and the loss in
 * float64 over the blocks of 8 entries that hold a nonzero label (one block a
 * row for one-hot labels); pass 4 scales the exps into s·C·p_j (scale_exps)
 * and recomputes, in float64, the entries of the blocks with a label. The
 * maximum's entry is s·(p_a·(C - c_a) - (1 - p_a)·c_a) with 1 - p_a =
 * S'/(1 + S'): no p - 1 cancellation for a confident row. Rows without a
 * softmax (NaN, +inf, no finite logit) get a NaN loss and gradient, left to the
 * caller. A nonzero label on a -inf logit makes the loss inf (also left to the
 * caller, whose generic kernel defines the gradient there).
 */

/* The loss terms and c_j of 4 entries off the maximum: d = x - m (exact), t, alpha. */
INLINE void focal_grad_terms(v4d d, v4d t, v4d a, v4d lse, v4d inv_total, double gamma, v4d *loss_term, v4d *c,
                             v4d *p_out) {
    const v4d floor = splat_d(-700.0);
    v4d e = exp_pd(select_d(d > floor, d, floor));
    v4d p = e * inv_total;
    v4d q = 1.0 - p; /* >= 1/2 off the maximum */
    v4d w = power_pd(q, gamma);
    v4d nll = lse - d;
    v4l on = t != 0.0;
    *loss_term = select_d(on, a * w * t * nll, splat_d(0.0));
    *c = select_d(on, a * t * w * (gamma * p * nll / q + 1.0), splat_d(0.0));
    *p_out = p;
}

/* One block of 8 entries starting at i: the loss terms and c summed into *loss_sum and *c_sum
 * (grad == NULL), or the gradient entries s·(p_j C - c_j) written to grad + i (n lanes). The
 * maximum (if in the block) is left out: its lane gets t = 0 and, in the gradient, is rewritten later. */
INLINE void focal_grad_block(const float *x, const float *t, const double *alpha, int64_t n_alpha, int64_t i,
                             int64_t n, RowMax rm, double lse, double inv_total, double gamma, double *loss_sum,
                             double *c_sum, float *grad, double s, double big_c) {
    double xd[W], td[W], ad[W];
    for (int l = 0; l < W; l++) {
        int64_t j = i + l;
        int keep = l < n && j != rm.argmax;
        xd[l] = keep ? (double)x[j] : (double)rm.max;
        td[l] = keep ? (double)t[j] : 0.0;
        ad[l] = keep ? alpha[n_alpha == 1 ? 0 : j] : 0.0;
    }
    const v4d m64 = splat_d((double)rm.max), lse64 = splat_d(lse), inv64 = splat_d(inv_total);
    for (int h = 0; h < 2; h++) {
        v4d xv, tv, av, term, c, p;
        memcpy(&xv, xd + 4 * h, sizeof xv);
        memcpy(&tv, td + 4 * h, sizeof tv);
        memcpy(&av, ad + 4 * h, sizeof av);
        focal_grad_terms(xv - m64, tv, av, lse64, inv64, gamma, &term, &c, &p);
        if (!grad) {
            *loss_sum += (term[0] + term[1]) + (term[2] + term[3]);
            *c_sum += (c[0] + c[1]) + (c[2] + c[3]);
            continue;
        }
        for (int l = 0; l < 4; l++) {
            int lane = 4 * h + l;
            if (lane < n && i + lane != rm.argmax) grad[i + lane] = (float)(s * (p[l] * big_c - c[l]));
        }
    }
}

/* Whether entries [i, i + n) hold a nonzero label. */
INLINE int block_has_label(const float *t, int64_t i, int64_t n) {
    /* one compare and a mask test per full block (a loop over the lanes costs more than the
     * rest of the pass on a one-hot row): -0.0 compares equal to 0, as t != 0 in the terms */
    if (n == W) return any_lane(load(t + i) != splat(0.0f));
    for (int64_t l = 0; l < n; l++)
        if (t[i + l] != 0.0f) return 1;
    return 0;
}

/* The starts of the blocks of W entries that hold a nonzero label, ascending, into idx (room for
 * cap); their count, or -1 where there are more than cap (the caller then tests every block).
 * Four vectors are tested at once: a one-hot row is mostly zero vectors, and one scan of them
 * here replaces the per-block tests of passes 3 and 4. */
#define LABEL_BLOCKS 32
INLINE int64_t label_blocks(const float *t, int64_t k, int64_t *idx, int64_t cap) {
    const v8f zero = splat(0.0f);
    int64_t count = 0, i = 0;
    for (; i + 4 * W <= k; i += 4 * W) {
        v8i any = (load(t + i) != zero) | (load(t + i + W) != zero) | (load(t + i + 2 * W) != zero)
                  | (load(t + i + 3 * W) != zero);
        if (!any_lane(any)) continue;
        for (int64_t j = i; j < i + 4 * W; j += W) {
            if (!block_has_label(t, j, W)) continue;
            if (count == cap) return -1;
            idx[count++] = j;
        }
    }
    for (; i < k; i += W) {
        int64_t n = k - i < W ? k - i : W;
        if (!block_has_label(t, i, n)) continue;
        if (count == cap) return -1;
        idx[count++] = i;
    }
    return count;
}

void PL_NAME(pl_focal_softmax_ce_grad_rows)(const float *logits, const float *labels, int64_t k,
                                           const double *alpha, int64_t n_alpha, double gamma, float *loss,
                                           float *grad, const float *row_scale, double scale, float *bounds,
                                           float *label_bounds, int64_t row_begin, int64_t row_end) {
    for (int64_t r = row_begin; r < row_end; r++) {
        const float *x = logits + r * k;
        const float *t = labels + r * k;
        float *g = grad ? grad + r * k : NULL;
        RowMax rm = row_max(x, k);
        put_bounds(bounds, r, rm);
        if (rm.bad) {
            loss[r] = NAN;
            if (g) fill_nan(g, k);
            if (label_bounds) put_row_range(label_bounds + 2 * r, t, k);
            continue;
        }
        const float *next = r + 1 < row_end ? x + k : NULL;
        /* The labels go through pass 2 too (their sums are not needed): there their loads overlap
         * the exps' arithmetic, while in pass 3 alone a one-hot row's labels come from memory with
         * nothing to hide them (a fifth of the kernel's time, measured), and from cache after. The
         * same pass takes their range where label_bounds asks for it (the data checks then make no
         * pass of their own over the labels). */
        LabelSums sums = {{{0}, {0}}, {{0}, {0}}, range_start()};
        const float *next_t = next ? t + k : NULL;
        double rest = (label_bounds ? row_rest(x, k, &rm, g, next, next_t, t, &sums, 1)
                                    : row_rest(x, k, &rm, g, next, next_t, t, &sums, 0)) * TWO_M100; /* also finds rm.argmax */
        if (label_bounds) range_put(label_bounds + 2 * r, sums.range);
        double lse = log1p(rest), denominator = 1.0 + rest, inv_total = 1.0 / denominator;
        double loss_sum = 0.0, c_rest = 0.0;
        int64_t blocks[LABEL_BLOCKS];
        const int64_t n_blocks = label_blocks(t, k, blocks, LABEL_BLOCKS);
        /* the same blocks in the same order either way: the same sums */
        for (int64_t b = 0, i = 0; n_blocks >= 0 ? b < n_blocks : i < k; b++, i += W) {
            if (n_blocks >= 0) i = blocks[b];
            int64_t n = k - i < W ? k - i : W;
            if (n_blocks >= 0 || block_has_label(t, i, n))
                focal_grad_block(x, t, alpha, n_alpha, i, n, rm, lse, inv_total, gamma, &loss_sum, &c_rest, NULL,
                                 0.0, 0.0);
        }
        /* the maximum: 1 - p_a = S'/(1 + S'), p_a = 1/(1 + S'), -log p_a = log1p(S') */
        double t_top = (double)t[rm.argmax], a_top = alpha[n_alpha == 1 ? 0 : rm.argmax];
        double q_top = rest * inv_total, c_top = 0.0;
        if (t_top != 0.0) {
            double w_top = power(q_top, gamma);
            loss_sum += a_top * w_top * t_top * lse;
            /* gamma (1 - p)^(gamma - 1) p l = gamma w p l / (1 - p); 0 when S' = 0 (l = 0) */
            double focus = lse == 0.0 ? 0.0 : gamma * w_top * inv_total * lse / q_top;
            c_top = a_top * t_top * (w_top + focus);
        }
        loss[r] = (float)loss_sum;
        if (!g) continue;
        double s = scale * (row_scale ? (double)row_scale[r] : 1.0), big_c = c_rest + c_top;
        /* every entry: s·C·p_j from the float32 exps; then the label blocks in float64 */
        scale_exps(g, k, s * big_c * inv_total * rm.scale, NULL, 0.0f);
        for (int64_t b = 0, i = 0; n_blocks >= 0 ? b < n_blocks : i < k; b++, i += W) {
            if (n_blocks >= 0) i = blocks[b];
            int64_t n = k - i < W ? k - i : W;
            if (n_blocks >= 0 || block_has_label(t, i, n))
                focal_grad_block(x, t, alpha, n_alpha, i, n, rm, lse, inv_total, gamma, NULL, NULL, g, s, big_c);
        }
        g[rm.argmax] = (float)(s * (inv_total * c_rest - q_top * c_top));
    }
}
