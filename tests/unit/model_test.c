/* The model interface (model/model.h): the registry finds each type by the
 * name stored in model files; a type's configuration from the options puts
 * the shared settings where model_common finds them; the layers come in
 * forward order (the MoE layers the trainer logs, the benchmark's
 * components); moe-train has a task for each type; the stored-architecture check ignores training-only settings
 * and refuses a different network; and the batch rows every model's MoE
 * uses (model/moe_block.h) are right for a padded slice of a batch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/check.h"
#include "core/log.h"
#include "io/ckpt.h"
#include "model/lm.h"
#include "model/moe_block.h"
#include "model/s2s.h"
#include "train/tasks.h"

static void set(Config *c, const char *name, const char *v) {
    char err[256];
    assert_int_equal(cfg_set(c, name, v, CFG_RECIPE, NULL, err, sizeof err), 0);
}

static void test_registry(void **state) {
    (void)state;
    int n;
    const ModelOps *const *all = model_types(&n);
    assert_int_equal(n, 2);
    assert_ptr_equal(model_ops_find("lm"), &lm_model_ops);
    assert_ptr_equal(model_ops_find("s2s"), &s2s_model_ops);
    assert_null(model_ops_find("transformer"));
    Config *c = cfg_new(TOOL_TRAIN);
    set(c, "softmax", "full");
    set(c, "moe-expert-count", "16");
    set(c, "softmax-chunk", "77");
    set(c, "residual", "false");
    set(c, "dropout", "0.25");
    for (int i = 0; i < n; i++) {
        assert_ptr_equal(model_ops_find(all[i]->type), all[i]);
        Model md;
        assert_null(model_config(&md, all[i], c, 1000));
        const ModelCommon *mc = model_common(all[i], md.cfg);
        assert_int_equal(mc->moe.experts, 16);
        assert_int_equal(mc->moe.dim, all[i]->dim(md.cfg));
        assert_int_equal(mc->chunk, 77);
        assert_int_equal(mc->residual, 0);
        assert_true(mc->drop.rnn == (real)0.25 && mc->drop.out == (real)0.25);
        assert_null(all[i]->config_error(md.cfg));
        model_free(&md);
    }
    /* the translation model's own flag reaches the shared one */
    set(c, "tied-embeddings-all", "true");
    S2sConfig sc;
    assert_null(s2s_config_from_options(c, 1000, &sc));
    assert_true(sc.tied_all && sc.common.tied);
    cfg_free(c);
}

static void test_layers_in_forward_order(void **state) {
    (void)state;
    Config *c = cfg_new(TOOL_TRAIN);
    set(c, "softmax", "full");
    set(c, "layers", "lstm,moe,lstm,moe");
    set(c, "dim-emb", "8");
    set(c, "dim-rnn", "8");
    set(c, "moe-expert-count", "4");
    set(c, "moe-top-k", "2");
    Model lm;
    ParamStore ps;
    params_init(&ps, NULL);
    assert_null(model_config(&lm, &lm_model_ops, c, 50));
    model_init(&lm, &ps, NULL);
    ModelLayer L[16];
    assert_int_equal(lm_model_ops.layers(lm.net, L, 16), 5);
    const Lm *m = lm.net;
    ModelLayerKind want[] = {MODEL_LAYER_LSTM, MODEL_LAYER_MOE, MODEL_LAYER_LSTM, MODEL_LAYER_MOE, MODEL_LAYER_SOFTMAX};
    for (int i = 0; i < 5; i++) assert_int_equal(L[i].kind, want[i]);
    assert_ptr_equal(L[0].lstm, &m->lstm[0]);
    assert_ptr_equal(L[4].sm, &m->sm);
    const Moe *moe[4];
    assert_int_equal(model_moe_layers(&lm_model_ops, m, moe, 4), 2);
    assert_ptr_equal(moe[0], &m->moe[1]);
    assert_ptr_equal(moe[1], &m->moe[3]);
    assert_int_equal(model_moe_layers(&lm_model_ops, m, moe, 1), 1);
    assert_int_equal(lm_model_ops.layers(lm.net, L, 3), 3);
    params_destroy(&ps);
    model_free(&lm);

    /* encoder: bidirectional LSTM, MoE, LSTM; decoder: the input-feeding LSTM, attention, LSTM, MoE */
    set(c, "type", "s2s");
    set(c, "enc-depth", "2");
    set(c, "dec-depth", "2");
    set(c, "enc-moe-after", "1");
    set(c, "dec-moe-after", "2");
    set(c, "dim-attention", "8");
    Model tm;
    params_init(&ps, NULL);
    assert_null(model_config(&tm, model_ops_find(cfg_str(c, "type")), c, 50));
    assert_ptr_equal(tm.ops, &s2s_model_ops);
    model_init(&tm, &ps, NULL);
    const S2s *s = tm.net;
    assert_int_equal(s2s_model_ops.layers(tm.net, L, 16), 8);
    ModelLayerKind want2[] = {MODEL_LAYER_BILSTM, MODEL_LAYER_MOE,  MODEL_LAYER_LSTM, MODEL_LAYER_LSTM,
                              MODEL_LAYER_ATTENTION, MODEL_LAYER_LSTM, MODEL_LAYER_MOE, MODEL_LAYER_SOFTMAX};
    int source[] = {1, 1, 1, 0, 0, 0, 0, 0};
    for (int i = 0; i < 8; i++) {
        assert_int_equal(L[i].kind, want2[i]);
        assert_int_equal(L[i].source, source[i]);
        assert_int_equal(L[i].stepwise, i == 3);
    }
    assert_ptr_equal(L[3].lstm, &s->dec[0]);
    assert_int_equal(model_moe_layers(&s2s_model_ops, s, moe, 4), 2);
    assert_ptr_equal(moe[0], &s->enc_moe);
    assert_ptr_equal(moe[1], &s->dec_moe);
    params_destroy(&ps);
    model_free(&tm);
    cfg_free(c);
}

/* moe-train has a task for every model type (train/tasks.c), of that type */
static void test_every_type_has_a_task(void **state) {
    (void)state;
    int n;
    const ModelOps *const *all = model_types(&n);
    for (int i = 0; i < n; i++) {
        Task *t = task_new(all[i]->type);
        assert_string_equal(t->ops->type, all[i]->type);
        t->ops->free(t);
    }
}

/* ---- the stored-architecture check --------------------------------------------------- */

static jmp_buf g_jump;
static int g_code;
static void on_fatal(int code, const char *msg) {
    (void)msg;
    g_code = code;
    longjmp(g_jump, 1);
}

/* A language-model file holding the config of options `stored`; returns its reader. */
static ckpt_reader *stored_model(const char *path, Config *stored) {
    char err[CKPT_MSG_LEN], *yaml = options_dump_string(stored, 0);
    ckpt_writer *w = ckpt_writer_open(path, CKPT_MODEL);
    ckpt_put_str(w, "type", "lm");
    ckpt_put_str(w, "config", yaml);
    assert_int_equal(ckpt_writer_commit(w, err, sizeof err), CKPT_OK);
    free(yaml);
    ckpt_reader *r;
    assert_int_equal(ckpt_open(path, CKPT_MODEL, &r, err, sizeof err), 0);
    return r;
}

static void test_same_architecture(void **state) {
    (void)state;
    log_set_quiet(1);
    char path[] = "/tmp/model_test_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    Config *old = cfg_new(TOOL_TRAIN), *now = cfg_new(TOOL_TRAIN);
    const char *arch[][2] = {{"layers", "lstm,moe,lstm"}, {"dim-emb", "8"}, {"dim-rnn", "8"},
                             {"moe-expert-count", "4"}, {"moe-top-k", "2"}, {"softmax", "full"}};
    for (int i = 0; i < 6; i++) {
        set(old, arch[i][0], arch[i][1]);
        set(now, arch[i][0], arch[i][1]);
    }
    ckpt_reader *r = stored_model(path, old);
    /* training-only settings may change between runs */
    set(now, "dropout", "0.3");
    set(now, "label-smoothing", "0.1");
    set(now, "moe-load-weight", "0.5");
    set(now, "softmax-chunk", "5");
    Model md;
    ParamStore ps;
    params_init(&ps, NULL);
    model_setup(&md, &lm_model_ops, now, r, path, 30, &ps, NULL, "cpu");
    assert_int_equal(((const LmConfig *)md.cfg)->common.chunk, 5);
    params_destroy(&ps);
    model_free(&md);
    /* the network may not */
    set(now, "moe-expert-count", "8");
    params_init(&ps, NULL);
    moe_set_fatal_handler(on_fatal);
    g_code = 0;
    if (!setjmp(g_jump)) {
        model_setup(&md, &lm_model_ops, now, r, path, 30, &ps, NULL, "cpu");
        fail_msg("a model of 8 experts resumed one of 4");
    }
    moe_set_fatal_handler(NULL);
    assert_int_equal(g_code, EXIT_USAGE);
    assert_non_null(strstr(moe_last_error(), "holds a different model"));
    assert_non_null(strstr(moe_last_error(), "moe 4 k=2"));
    params_destroy(&ps);
    model_free(&md);
    ckpt_close(r);
    unlink(path);
    cfg_free(old);
    cfg_free(now);
}

/* ---- batch rows -------------------------------------------------------------------- */

static void download_i32(Backend *be, Tensor t, int32_t *out) { be_download_tensor(be, out, t); }

static void test_rows(void **state) {
    (void)state;
    Backend *be = backend_create("cpu", 1);
    Arena arena;
    arena_init(&arena, be, 0, "activations");
    Ctx c = {.be = be, .arena = &arena, .train = 1, .seed = 1};
    /* 3 steps x 2 sequences of lengths 3 and 1, columns 2..3 of a batch of 5 */
    int32_t len[2] = {3, 1};
    MoeBlockRows r;
    moe_block_rows(&c, len, 3, 2, 5, 2, &r);
    real mask[6];
    be_download_tensor(be, mask, r.mask);
    real want_mask[6] = {1, 1, 1, 0, 1, 0};
    for (int i = 0; i < 6; i++) assert_true(mask[i] == want_mask[i]);
    int32_t valid[4], keys[4];
    assert_int_equal(tnumel(r.valid), 4);
    download_i32(be, r.valid, valid);
    download_i32(be, r.keys, keys);
    int32_t want_valid[4] = {0, 1, 2, 4}, want_keys[4] = {2, 3, 7, 12}; /* t * 5 + 2 + b */
    assert_memory_equal(valid, want_valid, sizeof valid);
    assert_memory_equal(keys, want_keys, sizeof keys);
    /* nothing padded, the whole batch: nothing to upload */
    int32_t full[2] = {3, 3};
    moe_block_rows(&c, full, 3, 2, 2, 0, &r);
    assert_true(tnull(r.mask) && tnull(r.valid) && tnull(r.keys));
    /* nothing padded, a slice: only the keys */
    moe_block_rows(&c, full, 3, 2, 4, 1, &r);
    assert_true(tnull(r.mask) && tnull(r.valid) && tnumel(r.keys) == 6);
    int32_t k6[6];
    download_i32(be, r.keys, k6);
    int32_t want6[6] = {1, 2, 5, 6, 9, 10};
    assert_memory_equal(k6, want6, sizeof k6);
    arena_destroy(&arena);
    backend_destroy(be);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_layers_in_forward_order),
        cmocka_unit_test(test_every_type_has_a_task),
        cmocka_unit_test(test_same_architecture),
        cmocka_unit_test(test_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
