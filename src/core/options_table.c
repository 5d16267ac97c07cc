/* The options of moe-train (T), moe-eval (E) and moe-translate (R): one entry per
 * option and tool set. Names follow Marian where Marian has one, fairseq for MoE
 * (DESIGN.md §4). Aliases are per tool: -o is --optimizer in moe-train and --output
 * in moe-translate; -t is --train-sets in moe-train and --test in moe-eval.
 * --mini-batch has two entries: sequences per training batch (moe-train, 64) and
 * sentences per translation/scoring batch (moe-eval, moe-translate, 16).
 * Numeric options are non-negative (options.c rejects negative values). */
#include "core/options.h"

#define T   TOOL_TRAIN
#define E   TOOL_EVAL
#define R   TOOL_TRANSLATE
#define TER TOOL_ALL

/* Fields in order: name, alias, type, group, tools, default; the rest designated. */
const OptDef options_table[] = {
    /* ---- General ---- */
    {"config", 'c', OPT_LIST, GRP_GENERAL, TER, "", .metavar = "FILE...", .flags = OPTF_NO_DUMP,
     .help = "YAML recipes applied in order before the command line; later ones override earlier ones"},
    {"help", 'h', OPT_BOOL, GRP_GENERAL, TER, "false", .implicit = "true",
     .flags = OPTF_CLI_ONLY | OPTF_NO_DUMP, .help = "print this help and exit"},
    {"version", 0, OPT_BOOL, GRP_GENERAL, TER, "false", .implicit = "true",
     .flags = OPTF_CLI_ONLY | OPTF_NO_DUMP, .help = "print the version and exit"},
    {"build-info", 0, OPT_BOOL, GRP_GENERAL, TER, "false", .implicit = "true",
     .flags = OPTF_CLI_ONLY | OPTF_NO_DUMP,
     .help = "print what was compiled in (BLAS, CUDA, NCCL, MPI, SentencePiece) and exit"},
    {"dump-config", 0, OPT_ENUM, GRP_GENERAL, TER, "", .choices = "|full|minimal", .implicit = "full",
     .flags = OPTF_CLI_ONLY | OPTF_NO_DUMP,
     .help = "print the effective config as a YAML recipe and exit: every option (full) or only "
             "those that differ from the defaults (minimal)"},
    {"log", 0, OPT_STRING, GRP_GENERAL, TER, "", .metavar = "FILE", .help = "also write the log to FILE"},
    {"quiet", 0, OPT_BOOL, GRP_GENERAL, TER, "false", .implicit = "true", .help = "do not log to stderr"},
    {"seed", 0, OPT_INT, GRP_GENERAL, TER, "1234",
     .help = "seed of the Philox RNG: initialisation, gating noise, dropout, shuffling"},
    {"devices", 'd', OPT_LIST, GRP_GENERAL, TER, "", .metavar = "ID...",
     .help = "GPUs to use, e.g. 0 or 0 1 2 3, or cpu; empty: GPU 0 when one is found, else the CPU"},
    {"cpu-threads", 0, OPT_INT, GRP_GENERAL, TER, "0",
     .help = "CPU threads for OpenMP and BLAS (0 = all cores)"},
    {"precision", 0, OPT_ENUM, GRP_GENERAL, TER, "auto", .choices = "auto|fp32|tf32|bf16",
     .help = "GPU compute precision with fp32 master weights; auto = bf16 where the GPU supports it "
             "(the CPU computes in fp32)"},

    /* ---- Model (moe-eval and moe-translate read it from the model file) ---- */
    {"type", 0, OPT_ENUM, GRP_MODEL, T, "lm", .choices = "lm|s2s",
     .help = "model type: language model or sequence-to-sequence translation model"},
    {"model", 'm', OPT_STRING, GRP_MODEL, TER, "model.bin", .metavar = "FILE",
     .help = "model file: training writes FILE and FILE.state and resumes from them; eval and "
             "translate read FILE"},
    {"dim-vocabs", 0, OPT_LIST, GRP_MODEL, T, "0", .elem = OPT_INT, .metavar = "N...",
     .help = "vocabulary sizes, one per vocabulary in --vocabs order (0 = all words)"},
    {"dim-emb", 0, OPT_INT, GRP_MODEL, T, "512", .help = "embedding size"},
    {"dim-rnn", 0, OPT_INT, GRP_MODEL, T, "512", .help = "LSTM hidden state size"},
    {"dim-proj", 0, OPT_INT, GRP_MODEL, T, "0", .help = "LSTM output projection size (0 = no projection)"},
    {"layers", 0, OPT_ENUM_SEQ, GRP_MODEL, T, "lstm,moe,lstm", .choices = "lstm|moe", .metavar = "STACK",
     .help = "language-model layers between the embedding and the softmax, comma-separated"},
    {"enc-depth", 0, OPT_INT, GRP_MODEL, T, "3", .help = "encoder LSTM layers (s2s)"},
    {"dec-depth", 0, OPT_INT, GRP_MODEL, T, "2", .help = "decoder LSTM layers (s2s)"},
    {"enc-moe-after", 0, OPT_INT, GRP_MODEL, T, "2",
     .help = "put the encoder MoE after this encoder layer (2: between layers 2 and 3; 0 = none)"},
    {"dec-moe-after", 0, OPT_INT, GRP_MODEL, T, "1",
     .help = "put the decoder MoE after this decoder layer (0 = none)"},
    {"enc-bidirectional", 0, OPT_BOOL, GRP_MODEL, T, "true", .implicit = "true",
     .help = "make the first encoder layer bidirectional"},
    {"attention", 0, OPT_ENUM, GRP_MODEL, T, "separable", .choices = "separable|additive",
     .help = "attention function: the paper's separable form (Appendix G) or GNMT additive"},
    {"dim-attention", 0, OPT_INT, GRP_MODEL, T, "512", .help = "attention hidden size"},
    {"dropout", 0, OPT_FLOAT, GRP_MODEL, T, "0.1",
     .help = "dropout probability after the embeddings and every layer (0 = off); the four options below "
             "override it at one site"},
    {"dropout-emb", 0, OPT_STRING, GRP_MODEL, T, "", .metavar = "P", .check = options_check_rate,
     .help = "dropout after the word embeddings (empty = --dropout)"},
    {"dropout-rnn", 0, OPT_STRING, GRP_MODEL, T, "", .metavar = "P", .check = options_check_rate,
     .help = "dropout on the outputs of the LSTM layers (empty = --dropout)"},
    {"dropout-moe", 0, OPT_STRING, GRP_MODEL, T, "", .metavar = "P", .check = options_check_rate,
     .help = "dropout on the outputs of the MoE layers, after their sigmoid (empty = --dropout)"},
    {"dropout-softmax", 0, OPT_STRING, GRP_MODEL, T, "", .metavar = "P", .check = options_check_rate,
     .help = "dropout on the output of the layer that feeds the softmax, instead of that layer's own rate "
             "(empty = --dropout)"},
    {"residual", 0, OPT_BOOL, GRP_MODEL, T, "true", .implicit = "true",
     .help = "residual connections between stacked LSTM layers"},
    {"tied-embeddings", 0, OPT_BOOL, GRP_MODEL, T, "false", .implicit = "true",
     .help = "tie the target embedding and the softmax weights"},
    {"tied-embeddings-all", 0, OPT_BOOL, GRP_MODEL, T, "false", .implicit = "true",
     .help = "s2s: one table for the source embedding, the target embedding and the softmax weights (the "
             "vocabulary is shared)"},

    /* ---- MoE ---- */
    {"moe-expert-count", 0, OPT_INT, GRP_MOE, T, "32", .help = "experts per MoE layer (all groups together)"},
    {"moe-top-k", 0, OPT_INT, GRP_MOE, T, "4",
     .help = "experts used per token (per level when hierarchical)"},
    {"moe-expert-ffn-dim", 0, OPT_INT, GRP_MOE, T, "1024", .help = "hidden size of each expert"},
    {"moe-expert-layers", 0, OPT_INT, GRP_MOE, T, "1", .help = "hidden layers per expert"},
    {"moe-groups", 0, OPT_INT, GRP_MOE, T, "0", .help = "primary groups of a hierarchical MoE (0 = flat)"},
    {"moe-gating", 0, OPT_ENUM, GRP_MOE, T, "noisy-topk", .choices = "noisy-topk|batchwise|softmax|switch",
     .help = "gating network: noisy top-k (k >= 2), batchwise top-k with learned thresholds, dense softmax, or "
             "switch: the top k of the softmax over all experts with their probabilities as gates (k = 1 trains)"},
    {"moe-importance-weight", 0, OPT_FLOAT, GRP_MOE, T, "0.1",
     .help = "weight of the importance loss (CV^2)"},
    {"moe-load-weight", 0, OPT_FLOAT, GRP_MOE, T, "0.1", .help = "weight of the load loss (CV^2)"},
    {"moe-noise-epsilon", 0, OPT_FLOAT, GRP_MOE, T, "0.01",
     .help = "floor added to the softplus of the gating noise scale"},
    {"moe-threshold-weight", 0, OPT_FLOAT, GRP_MOE, T, "1.0",
     .help = "weight of the threshold loss of batchwise gating"},
    {"moe-recompute", 0, OPT_BOOL, GRP_MOE, T, "false", .implicit = "true",
     .help = "recompute the expert hidden layers in backward instead of storing them"},
    {"moe-load-log", 0, OPT_STRING, GRP_MOE, T, "", .metavar = "FILE",
     .help = "record the tokens each expert (and group) of every MoE layer received in one update, every "
             "--moe-load-freq updates, in FILE (moe-files(5); moe-plot draws it); a resumed run continues it"},
    {"moe-load-freq", 0, OPT_INT, GRP_MOE, T, "0",
     .help = "updates between two records of --moe-load-log (0 = --disp-freq)"},

    /* ---- Softmax ---- */
    {"softmax", 0, OPT_ENUM, GRP_SOFTMAX, T, "sampled", .choices = "sampled|full",
     .help = "training softmax: importance-sampled or full (evaluation always uses the full softmax)"},
    {"softmax-samples", 0, OPT_INT, GRP_SOFTMAX, T, "8192",
     .help = "negative samples of the sampled softmax"},
    {"softmax-chunk", 0, OPT_INT, GRP_SOFTMAX, T, "8192",
     .help = "vocabulary columns per chunk of the full softmax"},
    {"label-smoothing", 0, OPT_FLOAT, GRP_SOFTMAX, T, "0",
     .help = "train against the target smoothed by this much probability spread uniformly over the "
             "vocabulary (full softmax; 0 = off, 0.1 is usual for translation)"},

    /* ---- Training ---- */
    {"train-sets", 't', OPT_LIST, GRP_TRAINING, T, "", .metavar = "FILE...",
     .help = "training corpora, plain or .gz, or directories of shards (s2s: source and target)"},
    {"vocabs", 'v', OPT_LIST, GRP_TRAINING, T, "", .metavar = "FILE...",
     .help = "vocabulary files, one per corpus (.spm = SentencePiece model); built when missing"},
    {"after", 'a', OPT_STRING, GRP_TRAINING, T, "10e", .metavar = "LIMIT", .check = options_check_after,
     .help = "stop after e epochs, u updates or t target tokens, with K/M/G, e.g. 10e, 27000u, 100Gt, "
             "10e,27ku (whichever comes first); 0 = no limit in that unit, so 0u alone trains until stopped"},
    {"batching", 0, OPT_ENUM, GRP_TRAINING, T, "sentence", .choices = "sentence|stream",
     .help = "batches of whole sentences, or --mini-batch parallel streams cut into --bptt steps"},
    {"mini-batch-words", 0, OPT_INT, GRP_TRAINING, T, "300000",
     .help = "target words per batch (sentence batching)"},
    {"mini-batch", 0, OPT_INT, GRP_TRAINING, T, "64",
     .help = "sequences per batch (stream batching); with sentence batching a cap only when given"},
    {"max-length", 0, OPT_INT, GRP_TRAINING, T, "100",
     .help = "crop training sentences to this many tokens, </S> included (0 = no limit)"},
    {"bptt", 0, OPT_INT, GRP_TRAINING, T, "35",
     .help = "time steps per truncated-BPTT segment (stream batching)"},
    {"shuffle-buffer", 0, OPT_INT, GRP_TRAINING, T, "1000000",
     .help = "sentences read and shuffled together from a directory of shards"},
    {"optimizer", 'o', OPT_ENUM, GRP_TRAINING, T, "adam", .choices = "adam|sgd", .help = "optimizer"},
    {"optimizer-params", 0, OPT_LIST, GRP_TRAINING, T, "0.9 0.999 1e-8", .elem = OPT_FLOAT, .metavar = "X...",
     .help = "optimizer constants: Adam beta1 beta2 epsilon"},
    {"expert-optimizer", 0, OPT_ENUM, GRP_TRAINING, T, "same", .choices = "same|adam|factored",
     .help = "optimizer of the expert weights: the same as --optimizer, adam, or the paper's factored "
             "second moments without first moments (Appendix D)"},
    {"learn-rate", 'l', OPT_FLOAT, GRP_TRAINING, T, "0.001", .help = "base learning rate"},
    {"lr-schedule", 0, OPT_ENUM, GRP_TRAINING, T, "lm", .choices = "lm|nmt|step|constant",
     .help = "lm: warm-up then 1/sqrt(step); nmt: warm-up, constant, then 1/sqrt(step); step: decay "
             "per epoch; constant"},
    {"lr-warmup", 0, OPT_INT, GRP_TRAINING, T, "1000", .help = "updates of linear warm-up"},
    {"lr-constant", 0, OPT_INT, GRP_TRAINING, T, "8000",
     .help = "updates at the base rate after warm-up (nmt schedule)"},
    {"lr-decay", 0, OPT_FLOAT, GRP_TRAINING, T, "0.5", .help = "factor per epoch of the step schedule"},
    {"lr-decay-start", 0, OPT_INT, GRP_TRAINING, T, "4",
     .help = "epoch where the step schedule starts decaying"},
    {"clip-norm", 0, OPT_FLOAT, GRP_TRAINING, T, "1.0", .help = "clip the global gradient norm (0 = off)"},
    {"exponential-smoothing", 0, OPT_FLOAT, GRP_TRAINING, T, "0", .implicit = "1e-4", .metavar = "RATE",
     .help = "validate and save an exponential moving average of the weights, updated by max(RATE, "
             "9/(10+update)) after every update (0 = off); the state file keeps the trained weights"},
    {"optimizer-delay", 0, OPT_INT, GRP_TRAINING, T, "1", .help = "batches accumulated per update"},
    {"divergence", 0, OPT_LIST, GRP_TRAINING, T, "1000 10 5", .elem = OPT_FLOAT, .count = 3,
     .metavar = "SLOW FAST SIGMAS",
     .help = "stop without saving, exit 1, when the loss averaged over the last FAST updates exceeds its average "
             "over about SLOW updates by SIGMAS standard deviations of its update-to-update noise (at least "
             "SIGMAS x 2% of the average), or when the weights' norm more than doubles in one update "
             "(SIGMAS 0 = off)"},
    {"disp-freq", 0, OPT_INT, GRP_TRAINING, T, "100", .help = "log training statistics every N updates"},
    {"profile", 0, OPT_BOOL, GRP_TRAINING, T, "false", .implicit = "true", .flags = OPTF_NO_DUMP,
     .help = "also log where the updates' time went (LSTM, gating, dispatch, experts, combine, softmax, "
             "optimizer, other) with the statistics"},
    {"save-freq", 0, OPT_INT, GRP_TRAINING, T, "1000", .help = "save the model and state every N updates"},
    {"keep-best", 0, OPT_BOOL, GRP_TRAINING, T, "false", .implicit = "true",
     .help = "also keep the best model of the first validation metric"},
    {"no-reload", 0, OPT_BOOL, GRP_TRAINING, T, "false", .implicit = "true",
     .help = "start afresh even if the model file exists"},
    {"no-optimizer-reload", 0, OPT_BOOL, GRP_TRAINING, T, "false", .implicit = "true",
     .help = "resume the weights but not the optimizer state"},
    {"no-restore-corpus", 0, OPT_BOOL, GRP_TRAINING, T, "false", .implicit = "true",
     .help = "resume at the start of the corpus instead of where training stopped"},
    {"sigterm", 0, OPT_ENUM, GRP_TRAINING, T, "save-and-exit", .choices = "save-and-exit|exit-immediately",
     .help = "on SIGTERM/SIGINT save and exit with 143, or exit at once"},
    {"max-length-ratio", 0, OPT_FLOAT, GRP_TRAINING, T, "9",
     .help = "s2s: drop training pairs whose longer side has more than this many times the pieces of the "
             "shorter (0 = off; Moses clean-corpus uses 9)"},
    {"sentencepiece-max-lines", 0, OPT_INT, GRP_TRAINING, T, "2000000",
     .help = "s2s: sentences sampled to train a missing SentencePiece vocabulary (0 = all)"},
    {"sentencepiece-options", 0, OPT_STRING, GRP_TRAINING, T, "", .metavar = "FLAGS",
     .help = "s2s: extra spm_train flags for a vocabulary trained by moe-train, e.g. "
             "--character_coverage=0.9995"},
    {"vocab-min-count", 0, OPT_INT, GRP_TRAINING, T, "1",
     .help = "words seen fewer times are <unk> in built vocabularies"},

    /* ---- Distributed training ---- */
    {"rendezvous", 0, OPT_STRING, GRP_DIST, T, "", .metavar = "file:PATH", .flags = OPTF_CLI_ONLY | OPTF_NO_DUMP,
     .help = "start GPU processes without mpirun: each is given --world-size and its --rank and they meet "
             "through PATH on a filesystem all of them see (NCCL); mpirun/srun need no option"},
    {"world-size", 0, OPT_INT, GRP_DIST, T, "0", .flags = OPTF_CLI_ONLY | OPTF_NO_DUMP,
     .help = "processes of a --rendezvous run, or the number to plan for with --plan (0 = what mpirun/srun "
             "started, else 1)"},
    {"rank", 0, OPT_INT, GRP_DIST, T, "0", .flags = OPTF_CLI_ONLY | OPTF_NO_DUMP,
     .help = "this process's rank in a --rendezvous run, 0 .. --world-size - 1"},
    {"plan", 0, OPT_BOOL, GRP_DIST, T, "false", .implicit = "true", .flags = OPTF_CLI_ONLY | OPTF_NO_DUMP,
     .help = "print parameters, optimizer state, activation memory, FLOPs and all-to-all traffic per process "
             "of the recipe on --world-size processes, and whether it fits --gpu-memory; allocates nothing"},
    {"gpu-memory", 0, OPT_STRING, GRP_DIST, T, "80G", .metavar = "SIZE", .flags = OPTF_CLI_ONLY | OPTF_NO_DUMP,
     .help = "memory per GPU for --plan, e.g. 80G, 141G, 16G"},

    /* ---- Validation ---- */
    {"valid-sets", 0, OPT_LIST, GRP_VALIDATION, T, "", .metavar = "FILE...", .help = "validation corpora"},
    {"valid-freq", 0, OPT_INT, GRP_VALIDATION, T, "1000", .help = "validate every N updates"},
    {"valid-metrics", 0, OPT_LIST, GRP_VALIDATION, T, "perplexity", .elem = OPT_ENUM,
     .choices = "perplexity|cross-entropy|bleu|chrf", .metavar = "METRIC...",
     .help = "validation metrics; the first one drives early stopping and --keep-best"},
    {"early-stopping", 0, OPT_INT, GRP_VALIDATION, T, "10",
     .help = "stop after N validations without improvement (0 = never)"},
    {"valid-mini-batch", 0, OPT_INT, GRP_VALIDATION, T, "64", .help = "sentences per validation batch"},
    {"valid-log", 0, OPT_STRING, GRP_VALIDATION, T, "", .metavar = "FILE",
     .help = "also write validation lines to FILE"},

    /* ---- Translation ---- */
    {"input", 'i', OPT_STRING, GRP_TRANSLATION, R, "-", .metavar = "FILE",
     .help = "source sentences (- = stdin)"},
    {"output", 'o', OPT_STRING, GRP_TRANSLATION, R, "-", .metavar = "FILE",
     .help = "translations (- = stdout)"},
    {"beam-size", 'b', OPT_INT, GRP_TRANSLATION, TER, "5",
     .help = "beam size (moe-train: of the translations for BLEU and chrF validation)"},
    {"normalize", 'n', OPT_FLOAT, GRP_TRANSLATION, TER, "0.6", .metavar = "ALPHA", .implicit = "1",
     .help = "length penalty exponent alpha of GNMT, ((5+|Y|)/6)^alpha (0 = off)"},
    {"coverage-penalty", 0, OPT_FLOAT, GRP_TRANSLATION, TER, "0.2",
     .help = "coverage penalty beta of GNMT (0 = off)"},
    {"n-best", 0, OPT_BOOL, GRP_TRANSLATION, R, "false", .implicit = "true",
     .help = "print the whole beam as id ||| translation ||| score lines"},
    {"max-length-factor", 0, OPT_FLOAT, GRP_TRANSLATION, TER, "2.0",
     .help = "stop a translation at this many times the source length"},
    {"mini-batch", 0, OPT_INT, GRP_TRANSLATION, E | R, "16",
     .help = "sentences translated or scored together"},

    /* ---- Evaluation ---- */
    {"text", 0, OPT_LIST, GRP_EVALUATION, E, "", .metavar = "FILE...",
     .help = "files to score with the language model (perplexity)"},
    {"word-scores", 0, OPT_BOOL, GRP_EVALUATION, E, "false", .implicit = "true",
     .help = "also print the log-probability of every word"},
    {"json", 0, OPT_BOOL, GRP_EVALUATION, E, "false", .implicit = "true",
     .help = "print the results as JSON"},
    {"metrics", 0, OPT_LIST, GRP_EVALUATION, E, "bleu", .elem = OPT_ENUM, .choices = "bleu|chrf",
     .metavar = "METRIC...", .help = "translation metrics, computed as sacrebleu does"},
    {"tokenize", 0, OPT_ENUM, GRP_EVALUATION, E, "13a", .choices = "13a|none", .help = "BLEU tokenizer"},
    {"lowercase", 0, OPT_BOOL, GRP_EVALUATION, E, "false", .implicit = "true",
     .help = "case-insensitive BLEU"},
    {"refs", 'r', OPT_LIST, GRP_EVALUATION, E, "", .metavar = "FILE...", .help = "reference translations"},
    {"hyps", 0, OPT_STRING, GRP_EVALUATION, E, "-", .metavar = "FILE",
     .help = "translations to score against --refs (- = stdin)"},
    {"test", 't', OPT_LIST, GRP_EVALUATION, E, "", .metavar = "SRC REF", .count = 2,
     .help = "translate SRC with --model and score it against REF"},
};

const size_t options_table_size = sizeof options_table / sizeof options_table[0];
