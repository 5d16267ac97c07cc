#include "model/act.h"

double act_moe_routed(const MoeConfig *m) {
    if (m->experts == 1) return 1;
    if (m->gating == MOE_GATE_SOFTMAX) return m->experts;
    return m->groups ? (double)m->k * m->k : m->k;
}

void act_moe_block(const MoeConfig *m, int sharded, double *keep, double *temp) {
    double d = (double)m->dim, h = (double)m->hidden, L = m->hidden_layers, K = act_moe_routed(m), k = m->k;
    double n1 = m->groups ? m->groups : m->experts, b = m->groups ? (double)m->experts / m->groups : 0;
    double gate = m->experts == 1 ? 2 : m->gating == MOE_GATE_NOISY_TOPK ? 4 * n1 + 3 * k + 2 : 4 * n1 + 2 * K + 1;
    double hier = m->groups ? k * (d + 6) + k * (4 * b + 3 * k + 2) + k * b : 0;
    double route = 4 * K + 1 + (sharded ? 4 * K : 0);
    double experts = K * d * 2 + (m->recompute ? 0 : K * h * L);   /* xe, ye (+ hidden layers) */
    double block = 3 * d;                                            /* MoE input rows, sigmoid, output */
    *keep = gate + hier + route + experts + block;
    /* backward: output gradients, recomputed and gradient hidden layers,
     * the exchange buffers, the gates' gradients */
    *temp = K * d * 2 + K + K * h * L * (m->recompute ? 2 : 1) + K * d + (sharded ? 3 * K * d : 0) + 2 * n1 +
            (m->groups ? k * (d + 2 * b + 2) + d : 0) + 2 * d;
}

double act_lstm_keep(int64_t d, int64_t H, int64_t P) { return 2.0 * d + 5.0 * H + (P ? H : 0); }
