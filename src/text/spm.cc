// The C API of spm.h over libsentencepiece (C++17; the project's only C++ file).
//
// Every extern "C" function runs its body inside guarded(): failures inside
// are thrown as SpmError{status, message} (or escape from SentencePiece as
// std::exception) and turned into a status code and a one-line message there,
// so nothing propagates into C. SentencePiece's aborting paths (LoadOrDie,
// IdToPiece on a bad id, the unigram trainer on text that normalizes to
// nothing) are avoided by checking first.
#include "text/spm.h"

#include <fcntl.h>
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

extern "C" {
#include "io/fsutil.h"
#include "text/utf8.h"
}

namespace {

constexpr size_t kMsgCap = 1024;

struct SpmError {
    int status;
    std::string msg;
};

std::string strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
std::string strf(const char *fmt, ...) {
    char buf[kMsgCap];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return buf;
}

[[noreturn]] void fail(int status, std::string msg) { throw SpmError{status, std::move(msg)}; }

// Copy msg into buf as one line (newlines from SentencePiece become spaces).
void put_msg(char *buf, size_t cap, const char *msg) {
    if (!buf || cap == 0) return;
    size_t n = strnlen(msg, cap - 1);
    for (size_t i = 0; i < n; i++) buf[i] = (msg[i] == '\n' || msg[i] == '\r') ? ' ' : msg[i];
    while (n > 0 && buf[n - 1] == ' ') n--;
    buf[n] = '\0';
}

// Run f; map what it throws to a status and write the message into msg.
// The catch blocks allocate nothing, so out-of-memory is reported too.
template <class F>
int guarded(char *msg, size_t cap, F &&f) {
    try {
        f();
        return SPM_OK;
    } catch (const SpmError &e) {
        put_msg(msg, cap, e.msg.c_str());
        return e.status;
    } catch (const std::bad_alloc &) {
        put_msg(msg, cap, "out of memory in the SentencePiece wrapper");
        return SPM_ERR_NOMEM;
    } catch (const std::exception &e) {
        char tmp[kMsgCap];
        snprintf(tmp, sizeof tmp, "unexpected exception from SentencePiece: %s", e.what());
        put_msg(msg, cap, tmp);
        return SPM_ERR_INTERNAL;
    } catch (...) {
        put_msg(msg, cap, "unexpected non-standard exception from SentencePiece");
        return SPM_ERR_INTERNAL;
    }
}

// The message of a failed status without SentencePiece's "file.cc(N) [cond] "
// prefix when a human-readable sentence follows it.
std::string status_text(const sentencepiece::util::Status &st) {
    std::string m = st.message() ? st.message() : "";
    size_t cc = m.find(".cc(");
    size_t open = cc == std::string::npos ? cc : m.find(") [", cc);
    if (open != std::string::npos && m.find(' ') > cc) {
        int depth = 0;
        for (size_t i = open + 2; i < m.size(); i++) {
            if (m[i] == '[') depth++;
            if (m[i] == ']' && --depth == 0) {
                size_t b = m.find_first_not_of(' ', i + 1);
                if (b != std::string::npos) return m.substr(b);
                break;
            }
        }
    }
    if (m.empty()) m = st.ToString();
    return m.empty() ? std::string("unknown error") : m;
}

// Offset of the first byte that breaks strict UTF-8 (no overlongs, no
// surrogates, nothing above U+10FFFF), or n when the text is valid.
size_t utf8_bad_offset(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else {
            return i;
        }
        if (i + need >= n) return i;  // truncated sequence
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k <= need; k++)
            if ((s[i + k] & 0xC0) != 0x80) return i;
        i += need + 1;
    }
    return n;
}

// Encode input must be one valid UTF-8 line.
void check_text(const char *text, size_t len) {
    if (!text && len > 0) fail(SPM_ERR_ARG, "text is NULL");
    if (len == 0) return;
    const auto *s = reinterpret_cast<const unsigned char *>(text);
    const void *nul = memchr(s, '\0', len);
    if (nul) fail(SPM_ERR_TEXT, strf("text holds a NUL byte at offset %zu", (size_t)((const unsigned char *)nul - s)));
    const void *nl = memchr(s, '\n', len);
    if (nl)
        fail(SPM_ERR_TEXT, strf("text holds a newline at offset %zu; encode one line at a time",
                                (size_t)((const unsigned char *)nl - s)));
    size_t bad = utf8_bad_offset(s, len);
    if (bad < len) fail(SPM_ERR_TEXT, strf("text is not valid UTF-8 at byte offset %zu (0x%02x)", bad, s[bad]));
}

}  // namespace

struct Spm {
    sentencepiece::SentencePieceProcessor proc;
    mutable std::mutex mu;
    char msg[kMsgCap] = "";
};

namespace {

// Errors of calls made with a NULL handle, per thread.
thread_local char t_null_msg[kMsgCap];

// Run f for a call on handle sp and keep the message in the handle.
template <class F>
int on_handle(Spm *sp, F &&f) {
    char msg[kMsgCap];
    int st;
    if (!sp)
        st = guarded(msg, sizeof msg, [] { fail(SPM_ERR_ARG, "SentencePiece handle is NULL"); });
    else
        st = guarded(msg, sizeof msg, f);
    if (st != SPM_OK) {
        if (sp) {
            std::lock_guard<std::mutex> lock(sp->mu);
            memcpy(sp->msg, msg, sizeof msg);
        } else {
            memcpy(t_null_msg, msg, sizeof msg);
        }
    }
    return st;
}

int check_id(const Spm *sp, int32_t id) { return id >= 0 && id < sp->proc.GetPieceSize(); }

// ---- loading ---------------------------------------------------------------

bool read_varint(std::string_view b, size_t *i, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 64 && *i < b.size(); shift += 7) {
        unsigned char c = (unsigned char)b[(*i)++];
        *v |= (uint64_t)(c & 0x7F) << shift;
        if (!(c & 0x80)) return true;
    }
    return false;
}

// Protobuf parses a message cut at a field boundary without complaint, so a
// truncated model can load as a smaller one. ModelProto serializes its
// pieces (field 1) before trainer_spec (2) and normalizer_spec (3), and every
// trained model has both specs: require them at the top level.
bool has_both_specs(std::string_view b) {
    bool spec[4] = {false, false, false, false};
    size_t i = 0;
    while (i < b.size()) {
        uint64_t key, v;
        if (!read_varint(b, &i, &key)) return false;
        switch (key & 7) {
        case 0:
            if (!read_varint(b, &i, &v)) return false;
            break;
        case 1: i += 8; break;
        case 5: i += 4; break;
        case 2:
            if (!read_varint(b, &i, &v) || v > b.size() - i) return false;
            i += v;
            if ((key >> 3) == 2 || (key >> 3) == 3) spec[key >> 3] = true;
            break;
        default: return false;
        }
        if (i > b.size()) return false;
    }
    return spec[2] && spec[3];
}

// Why s cannot be a piece or a decoded line (NULL when it can): our C API hands
// out NUL-terminated, one-line UTF-8 text.
const char *bad_text(const std::string &s) {
    if (utf8_validate(s.data(), s.size()) >= 0) return "is not valid UTF-8";
    if (s.find('\0') != std::string::npos) return "holds a NUL byte";
    if (s.find('\n') != std::string::npos) return "holds a newline";
    return nullptr;
}

std::unique_ptr<Spm> load_from(std::string_view bytes, const std::string &what) {
    if (bytes.empty()) fail(SPM_ERR_MODEL, what + " is empty, not a SentencePiece model");
    auto sp = std::make_unique<Spm>();
    auto st = sp->proc.LoadFromSerializedProto(bytes);
    if (!st.ok()) {
        std::string why = status_text(st);
        if (why.find("ParseFromArray") != std::string::npos) why = "the bytes do not parse as a ModelProto";
        fail(SPM_ERR_MODEL, what + " is not a valid SentencePiece model (" + std::to_string(bytes.size()) +
                                " bytes): " + why);
    }
    if (!has_both_specs(bytes))
        fail(SPM_ERR_MODEL, what + " is a truncated SentencePiece model (" + std::to_string(bytes.size()) +
                                " bytes, no trainer or normalizer spec after the pieces)");
    if (sp->proc.GetPieceSize() <= 0) fail(SPM_ERR_MODEL, what + " is a SentencePiece model without pieces");
    // Protobuf does not check proto2 strings: a corrupt piece could hold bytes
    // that are not UTF-8, a NUL or a newline (found by tests/fuzz/spm.c).
    for (int id = 0, n = sp->proc.GetPieceSize(); id < n; id++) {
        const char *why = bad_text(sp->proc.IdToPiece(id));
        if (why)
            fail(SPM_ERR_MODEL, what + " is a corrupt SentencePiece model: piece " + std::to_string(id) + " " + why);
    }
    return sp;
}

// An open file descriptor, closed on scope exit.
struct Fd {
    int fd;
    explicit Fd(int f) : fd(f) {}
    Fd(const Fd &) = delete;
    Fd &operator=(const Fd &) = delete;
    ~Fd() {
        if (fd >= 0) close(fd);
    }
    int release() {
        int f = fd;
        fd = -1;
        return f;
    }
};

// Open path for reading; a missing file or a directory is an error naming
// the path ("what" says which kind of file it should have been).
std::unique_ptr<Fd> open_file(const char *path, const char *what, struct stat *st) {
    auto f = std::make_unique<Fd>(open(path, O_RDONLY | O_CLOEXEC));
    if (f->fd < 0) fail(SPM_ERR_IO, strf("cannot open %s '%s': %s", what, path, strerror(errno)));
    if (fstat(f->fd, st) != 0) fail(SPM_ERR_IO, strf("cannot stat %s '%s': %s", what, path, strerror(errno)));
    if (S_ISDIR(st->st_mode)) fail(SPM_ERR_IO, strf("%s '%s' is a directory, not a file", what, path));
    return f;
}

std::string read_file(const char *path, const char *what) {
    struct stat st;
    auto f = open_file(path, what, &st);
    std::string data;
    if (S_ISREG(st.st_mode)) data.reserve((size_t)st.st_size);
    char buf[1 << 16];
    for (;;) {
        ssize_t r = read(f->fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) fail(SPM_ERR_IO, strf("cannot read %s '%s': %s", what, path, strerror(errno)));
        if (r == 0) break;
        data.append(buf, (size_t)r);
    }
    return data;
}

// ---- training inputs ---------------------------------------------------------

// Decides whether the training text holds at least one line SentencePiece
// will keep after normalization. The unigram trainer aborts the process
// (CHECK) when every kept line normalizes to nothing, e.g. blank lines or
// lines of control characters; lines longer than max_sentence_length and
// lines holding U+2047 are dropped by the trainer before that, so they do
// not count.
class ContentScan {
  public:
    explicit ContentScan(size_t max_len) : max_len_(max_len) {}
    bool found() const { return found_; }
    void feed(const char *p, size_t n) {
        for (size_t i = 0; i < n && !found_; i++) {
            if (p[i] == '\n') {
                end_line();
            } else if (line_.size() <= max_len_) {
                line_.push_back(p[i]);
            }
        }
    }
    void finish() {
        if (!line_.empty()) end_line();
    }

  private:
    void end_line() {
        if (line_.size() <= max_len_ && line_.find("\xE2\x81\x87") == std::string::npos && visible(line_))
            found_ = true;
        line_.clear();
    }
    // Some code point that nmt_nfkc does not map to nothing or to a space.
    static bool visible(const std::string &s) {
        const auto *u = reinterpret_cast<const unsigned char *>(s.data());
        size_t n = s.size(), i = 0;
        while (i < n) {
            size_t bad = utf8_bad_offset(u + i, std::min(n - i, (size_t)4));
            unsigned c = u[i];
            if (bad == 0) {  // invalid byte: skip it
                i++;
                continue;
            }
            uint32_t cp;
            size_t len;
            if (c < 0x80) {
                cp = c, len = 1;
            } else if (c < 0xE0) {
                cp = ((c & 0x1Fu) << 6) | (u[i + 1] & 0x3Fu), len = 2;
            } else if (c < 0xF0) {
                cp = ((c & 0x0Fu) << 12) | ((u[i + 1] & 0x3Fu) << 6) | (u[i + 2] & 0x3Fu), len = 3;
            } else {
                cp = ((c & 0x07u) << 18) | ((u[i + 1] & 0x3Fu) << 12) | ((u[i + 2] & 0x3Fu) << 6) |
                     (u[i + 3] & 0x3Fu);
                len = 4;
            }
            i += len;
            if (cp >= 0x21 && cp <= 0x7E) return true;
            if (cp < 0xA1 || cp == 0xAD || cp == 0x1680 || cp == 0x180E || (cp >= 0x2000 && cp <= 0x200F) ||
                (cp >= 0x2028 && cp <= 0x202F) || (cp >= 0x205F && cp <= 0x206F) || cp == 0x3000 ||
                cp == 0xFEFF || (cp >= 0xFFF0 && cp <= 0xFFFF) || (cp >= 0xE0000 && cp <= 0xE0FFF))
                continue;
            return true;
        }
        return false;
    }

    size_t max_len_;
    std::string line_;
    bool found_ = false;
};

// A file under $TMPDIR, removed when this goes out of scope.
struct TempFile {
    std::string path;
    int fd = -1;
    TempFile() = default;
    TempFile(const TempFile &) = delete;
    TempFile &operator=(const TempFile &) = delete;
    ~TempFile() {
        if (fd >= 0) close(fd);
        if (!path.empty()) unlink(path.c_str());
    }
};

std::string temp_dir() {
    const char *t = getenv("TMPDIR");
    std::string d = (t && *t) ? t : "/tmp";
    // SentencePiece splits --input at commas.
    if (d.find(',') != std::string::npos)
        fail(SPM_ERR_IO, "TMPDIR '" + d + "' contains a comma, which SentencePiece's input list cannot hold");
    return d;
}

void make_temp(TempFile *t) {
    std::string tmpl = temp_dir() + "/moe-spm-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    int fd = mkostemp(buf.data(), O_CLOEXEC);
    if (fd < 0) fail(SPM_ERR_IO, strf("cannot create a temporary file in '%s': %s", temp_dir().c_str(), strerror(errno)));
    t->fd = fd;
    try {
        t->path = buf.data();
    } catch (...) {
        unlink(buf.data());
        throw;
    }
}

// Decompress (or copy) fd into a new temporary file, scanning its text.
// Takes ownership of fd.
void copy_to_temp(int fd, const char *path, TempFile *t, ContentScan *scan) {
    gzFile gz = gzdopen(fd, "rb");
    if (!gz) {
        close(fd);
        fail(SPM_ERR_NOMEM, strf("cannot start reading training input '%s'", path));
    }
    gzbuffer(gz, 1 << 17);
    try {
        make_temp(t);
        std::vector<char> buf(1 << 17);
        for (;;) {
            int r = gzread(gz, buf.data(), (unsigned)buf.size());
            if (r < 0) {
                int errnum;
                const char *m = gzerror(gz, &errnum);
                fail(SPM_ERR_IO, strf("cannot read training input '%s': %s", path,
                                      errnum == Z_ERRNO ? strerror(errno) : m));
            }
            if (r == 0) break;
            scan->feed(buf.data(), (size_t)r);
            if (fsutil_write_all(t->fd, buf.data(), (size_t)r) != 0)
                fail(SPM_ERR_IO, strf("cannot write temporary file '%s' for '%s': %s", t->path.c_str(), path,
                                      strerror(errno)));
        }
        // zlib reports a truncated stream as Z_BUF_ERROR after the last read.
        int errnum;
        const char *m = gzerror(gz, &errnum);
        if (errnum != Z_OK) {
            const char *why = strstr(m, ">: ");  // gzdopen names the stream "<fd:N>"
            fail(SPM_ERR_IO, strf("training input '%s' is truncated or corrupt gzip: %s", path, why ? why + 3 : m));
        }
        scan->finish();
        if (close(t->fd) != 0) {
            t->fd = -1;
            fail(SPM_ERR_IO, strf("cannot write temporary file '%s': %s", t->path.c_str(), strerror(errno)));
        }
        t->fd = -1;
    } catch (...) {
        gzclose_r(gz);
        throw;
    }
    gzclose_r(gz);
}

// Scan a plain regular file until it shows text (SentencePiece reads it itself).
void scan_plain(int fd, const char *path, ContentScan *scan) {
    std::vector<char> buf(1 << 17);
    while (!scan->found()) {
        ssize_t r = read(fd, buf.data(), buf.size());
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) fail(SPM_ERR_IO, strf("cannot read training input '%s': %s", path, strerror(errno)));
        if (r == 0) {
            scan->finish();
            break;
        }
        scan->feed(buf.data(), (size_t)r);
    }
}

// Resolve one input to a path SentencePiece can read; returns whether the
// input holds text. Temporary copies are appended to temps.
bool prepare_input(const char *path, size_t max_len, std::vector<std::unique_ptr<TempFile>> *temps,
                   std::vector<std::string> *paths) {
    struct stat st;
    auto f = open_file(path, "training input", &st);
    bool gz = false;
    if (S_ISREG(st.st_mode) && st.st_size >= 2) {
        unsigned char magic[2];
        if (pread(f->fd, magic, 2, 0) != 2)
            fail(SPM_ERR_IO, strf("cannot read training input '%s': %s", path, strerror(errno)));
        gz = magic[0] == 0x1f && magic[1] == 0x8b;
    }
    ContentScan scan(max_len);
    if (gz || !S_ISREG(st.st_mode) || strchr(path, ',')) {
        temps->push_back(std::make_unique<TempFile>());
        copy_to_temp(f->release(), path, temps->back().get(), &scan);
        paths->push_back(temps->back()->path);
    } else {
        scan_plain(f->fd, path, &scan);
        paths->push_back(path);
    }
    return scan.found();
}

// "--key=value --flag" -> map; a bare flag means true.
std::unordered_map<std::string, std::string> parse_extra(const char *extra) {
    static const char *const reserved[] = {
        "input", "model_prefix", "model_type", "vocab_size", "character_coverage", "input_sentence_size",
        "num_threads", "unk_id", "bos_id", "eos_id", "pad_id", "random_seed", "minloglevel", "input_format"};
    std::unordered_map<std::string, std::string> kw;
    if (!extra) return kw;
    const char *p = extra;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (!*p) break;
        const char *e = p;
        while (*e && *e != ' ' && *e != '\t' && *e != '\n' && *e != '\r') e++;
        std::string tok(p, e);
        p = e;
        std::string body = tok.compare(0, 2, "--") == 0 ? tok.substr(2) : tok;
        size_t eq = body.find('=');
        std::string key = body.substr(0, eq);
        std::string val = eq == std::string::npos ? "true" : body.substr(eq + 1);
        if (key.empty()) fail(SPM_ERR_ARG, "SentencePiece extra option '" + tok + "' has no name");
        for (const char *r : reserved)
            if (key == r)
                fail(SPM_ERR_ARG, "SentencePiece extra option '--" + key +
                                      "' is set by the wrapper (use its own field; special ids are fixed)");
        if (kw.count(key)) fail(SPM_ERR_ARG, "SentencePiece extra option '--" + key + "' is given twice");
        kw[key] = val;
    }
    return kw;
}

void check_train_opts(const SpmTrainOpts *o, char **model, size_t *model_len) {
    if (!o) fail(SPM_ERR_ARG, "spm_train: options are NULL");
    if (!model || !model_len) fail(SPM_ERR_ARG, "spm_train: output pointers are NULL");
    if (!o->inputs || o->n_inputs <= 0) fail(SPM_ERR_ARG, "spm_train: no training input files");
    for (int i = 0; i < o->n_inputs; i++)
        if (!o->inputs[i] || !o->inputs[i][0]) fail(SPM_ERR_ARG, strf("spm_train: input %d is NULL or empty", i));
    if (o->model_type != SPM_UNIGRAM && o->model_type != SPM_BPE)
        fail(SPM_ERR_ARG, strf("spm_train: model type %d is neither unigram nor bpe", (int)o->model_type));
    if (o->vocab_size <= 0) fail(SPM_ERR_ARG, strf("spm_train: vocab size %d must be > 0", o->vocab_size));
    if (!(o->character_coverage >= 0.98 && o->character_coverage <= 1.0))
        fail(SPM_ERR_ARG, strf("spm_train: character coverage %g must be in [0.98, 1]", o->character_coverage));
    if (o->input_sentence_size < 0 || (o->input_sentence_size > 0 && o->input_sentence_size <= 100))
        fail(SPM_ERR_ARG,
             strf("spm_train: input sentence size %lld must be 0 (all) or > 100", (long long)o->input_sentence_size));
    if (o->num_threads < 1 || o->num_threads > 128)
        fail(SPM_ERR_ARG, strf("spm_train: num_threads %d must be in [1, 128]", o->num_threads));
    if (o->seed == 0xFFFFFFFFu) fail(SPM_ERR_ARG, "spm_train: seed 4294967295 is reserved by SentencePiece (random)");
    if (o->model_path && !o->model_path[0]) fail(SPM_ERR_ARG, "spm_train: model path is empty");
}

void put_varint(std::string *out, uint64_t v) {
    while (v >= 0x80) {
        out->push_back((char)(v | 0x80));
        v >>= 7;
    }
    out->push_back((char)v);
}

// Skip one field value of wire type wt at b[*i]; false when malformed.
bool skip_value(std::string_view b, size_t *i, unsigned wt) {
    uint64_t v;
    switch (wt) {
    case 0: return read_varint(b, i, &v);
    case 1: *i += 8; return *i <= b.size();
    case 5: *i += 4; return *i <= b.size();
    case 2:
        if (!read_varint(b, i, &v) || v > b.size() - *i) return false;
        *i += v;
        return true;
    default: return false;
    }
}

// The trainer records its --input list in trainer_spec.input (field 1 of
// ModelProto.trainer_spec, field 2). Replace our temporary copies by the
// caller's paths, so the model names the real corpus and is byte-identical
// across runs.
std::string set_spec_inputs(const std::string &proto, const SpmTrainOpts *o) {
    std::string_view b(proto);
    std::string out;
    out.reserve(proto.size() + 256);
    size_t i = 0;
    while (i < b.size()) {
        size_t start = i;
        uint64_t key;
        if (!read_varint(b, &i, &key)) fail(SPM_ERR_INTERNAL, "trained model does not parse (top-level key)");
        if (key != ((2u << 3) | 2u)) {
            if (!skip_value(b, &i, key & 7)) fail(SPM_ERR_INTERNAL, "trained model does not parse (top-level field)");
            out.append(b.substr(start, i - start));
            continue;
        }
        uint64_t len;
        if (!read_varint(b, &i, &len) || len > b.size() - i)
            fail(SPM_ERR_INTERNAL, "trained model does not parse (trainer_spec)");
        std::string_view spec = b.substr(i, len);
        i += len;
        std::string ns;
        for (int k = 0; k < o->n_inputs; k++) {
            put_varint(&ns, (1u << 3) | 2u);
            put_varint(&ns, strlen(o->inputs[k]));
            ns += o->inputs[k];
        }
        size_t j = 0;
        while (j < spec.size()) {
            size_t fs = j;
            uint64_t fk;
            if (!read_varint(spec, &j, &fk) || !skip_value(spec, &j, fk & 7))
                fail(SPM_ERR_INTERNAL, "trained model does not parse (trainer_spec field)");
            if (fk != ((1u << 3) | 2u)) ns.append(spec.substr(fs, j - fs));
        }
        put_varint(&out, key);
        put_varint(&out, ns.size());
        out += ns;
    }
    return out;
}

// SentencePiece keeps the log level and the seed in process globals.
std::mutex g_train_mu;

std::string train(const SpmTrainOpts *o) {
    auto kw = parse_extra(o->extra);
    size_t max_len = 4192;  // SentencePiece's default max_sentence_length
    auto it = kw.find("max_sentence_length");
    if (it != kw.end()) {
        char *end = nullptr;
        long long v = strtoll(it->second.c_str(), &end, 10);
        if (end == it->second.c_str() || *end || v < 10 || v > 1073741824)
            fail(SPM_ERR_ARG, "SentencePiece extra option '--max_sentence_length=" + it->second +
                                  "' must be an integer in [10, 1073741824]");
        max_len = (size_t)v;
    }

    std::vector<std::unique_ptr<TempFile>> temps;  // removed on every return or throw
    std::vector<std::string> paths;
    bool any_text = false;
    for (int i = 0; i < o->n_inputs; i++)
        any_text |= prepare_input(o->inputs[i], max_len, &temps, &paths);
    if (!any_text)
        fail(SPM_ERR_TRAIN,
             strf("training input '%s'%s has no line of text (files are empty or blank, or lines are longer than "
                  "max_sentence_length=%zu)",
                  o->inputs[0], o->n_inputs > 1 ? strf(" (and %d more)", o->n_inputs - 1).c_str() : "", max_len));

    std::string input;
    for (const auto &p : paths) input += (input.empty() ? "" : ",") + p;
    char cov[64];
    snprintf(cov, sizeof cov, "%.17g", o->character_coverage);
    kw["input"] = input;
    kw["model_type"] = o->model_type == SPM_BPE ? "bpe" : "unigram";
    kw["vocab_size"] = std::to_string(o->vocab_size);
    kw["character_coverage"] = cov;
    kw["input_sentence_size"] = std::to_string(o->input_sentence_size);
    kw["num_threads"] = std::to_string(o->num_threads);
    kw["unk_id"] = std::to_string(SPM_UNK_ID);
    kw["bos_id"] = std::to_string(SPM_BOS_ID);
    kw["eos_id"] = std::to_string(SPM_EOS_ID);
    kw["pad_id"] = std::to_string(SPM_PAD_ID);
    kw["minloglevel"] = o->verbose ? "0" : "1";  // 1: warnings and errors only

    std::string proto;
    sentencepiece::util::Status st;
    {
        std::lock_guard<std::mutex> lock(g_train_mu);
        sentencepiece::SetRandomGeneratorSeed(o->seed);
        // A fresh thread gets a fresh thread-local SentencePiece RNG seeded
        // from the seed above, so earlier use of the RNG in the caller's
        // thread cannot change the result.
        std::exception_ptr ex;
        std::thread th([&] {
            try {
                st = sentencepiece::SentencePieceTrainer::Train(kw, nullptr, &proto);
            } catch (...) {
                ex = std::current_exception();
            }
        });
        th.join();
        if (ex) std::rethrow_exception(ex);
    }
    if (!st.ok()) fail(SPM_ERR_TRAIN, "SentencePiece training failed: " + status_text(st));
    if (proto.empty()) fail(SPM_ERR_TRAIN, "SentencePiece training produced an empty model");
    proto = set_spec_inputs(proto, o);
    load_from(proto, "the trained model");  // the rewritten bytes must still load
    return proto;
}

}  // namespace

// ---- the C API -----------------------------------------------------------------

extern "C" {

const char *spm_status_name(int status) {
    switch (status) {
    case SPM_OK: return "ok";
    case SPM_ERR_ARG: return "invalid argument";
    case SPM_ERR_TEXT: return "invalid text";
    case SPM_ERR_IO: return "I/O error";
    case SPM_ERR_MODEL: return "invalid model";
    case SPM_ERR_TRAIN: return "training failed";
    case SPM_ERR_RANGE: return "out of range";
    case SPM_ERR_NOMEM: return "out of memory";
    case SPM_ERR_INTERNAL: return "internal error";
    default: return "unknown status";
    }
}

void spm_train_opts_init(SpmTrainOpts *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->model_type = SPM_UNIGRAM;
    o->vocab_size = 8000;
    o->character_coverage = 0.9995;
    o->input_sentence_size = 0;
    o->seed = 1;
    o->num_threads = 1;
}

int spm_train(const SpmTrainOpts *o, char **model, size_t *model_len, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (model) *model = nullptr;
    if (model_len) *model_len = 0;
    return guarded(err, errlen, [&] {
        check_train_opts(o, model, model_len);
        std::string proto = train(o);
        if (o->model_path) {
            char msg[kMsgCap] = "";
            if (fsutil_write_file_atomic(o->model_path, proto.data(), proto.size(), msg, sizeof msg) != 0)
                fail(SPM_ERR_IO, msg[0] ? std::string(msg) : strf("cannot write '%s'", o->model_path));
        }
        char *out = static_cast<char *>(malloc(proto.size()));
        if (!out) throw std::bad_alloc();
        memcpy(out, proto.data(), proto.size());
        *model = out;
        *model_len = proto.size();
    });
}

int spm_load_file(const char *path, Spm **out, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (out) *out = nullptr;
    return guarded(err, errlen, [&] {
        if (!path || !path[0]) fail(SPM_ERR_ARG, "SentencePiece model path is NULL or empty");
        if (!out) fail(SPM_ERR_ARG, "spm_load_file: output handle pointer is NULL");
        std::string data = read_file(path, "SentencePiece model");
        *out = load_from(data, strf("SentencePiece model file '%s'", path)).release();
    });
}

int spm_load_bytes(const void *bytes, size_t len, Spm **out, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (out) *out = nullptr;
    return guarded(err, errlen, [&] {
        if (!bytes && len > 0) fail(SPM_ERR_ARG, "SentencePiece model bytes are NULL");
        if (!out) fail(SPM_ERR_ARG, "spm_load_bytes: output handle pointer is NULL");
        std::string_view v(bytes ? static_cast<const char *>(bytes) : "", len);
        *out = load_from(v, "SentencePiece model bytes").release();
    });
}

int spm_serialize(Spm *sp, char **bytes, size_t *len) {
    if (bytes) *bytes = nullptr;
    if (len) *len = 0;
    return on_handle(sp, [&] {
        if (!bytes || !len) fail(SPM_ERR_ARG, "spm_serialize: output pointers are NULL");
        std::string s = sp->proc.serialized_model_proto();
        if (s.empty()) fail(SPM_ERR_MODEL, "SentencePiece model serialized to nothing");
        char *p = static_cast<char *>(malloc(s.size()));
        if (!p) throw std::bad_alloc();
        memcpy(p, s.data(), s.size());
        *bytes = p;
        *len = s.size();
    });
}

void spm_free(Spm *sp) { delete sp; }

const char *spm_last_error(const Spm *sp) {
    thread_local char copy[kMsgCap];
    if (!sp) return t_null_msg;
    std::lock_guard<std::mutex> lock(sp->mu);
    memcpy(copy, sp->msg, sizeof copy);
    return copy;
}

void spm_ids_free(SpmIds *v) {
    if (!v) return;
    free(v->ids);
    v->ids = nullptr;
    v->n = v->cap = 0;
}

int spm_encode_ids(Spm *sp, const char *text, size_t len, SpmIds *out) {
    return on_handle(sp, [&] {
        if (!out) fail(SPM_ERR_ARG, "spm_encode_ids: output buffer is NULL");
        check_text(text, len);
        std::vector<int> ids;
        auto st = sp->proc.Encode(std::string_view(text ? text : "", len), &ids);
        if (!st.ok()) fail(SPM_ERR_INTERNAL, "SentencePiece encode failed: " + status_text(st));
        size_t cap = out->ids ? out->cap : 0;
        if (cap < ids.size()) {
            size_t want = std::max({ids.size(), cap * 2, (size_t)16});
            auto *p = static_cast<int32_t *>(realloc(out->ids, want * sizeof(int32_t)));
            if (!p) throw std::bad_alloc();
            out->ids = p;
            out->cap = want;
        }
        for (size_t i = 0; i < ids.size(); i++) out->ids[i] = ids[i];
        out->n = ids.size();
    });
}

int spm_encode_pieces(Spm *sp, const char *text, size_t len, char ***pieces, size_t *n) {
    if (pieces) *pieces = nullptr;
    if (n) *n = 0;
    return on_handle(sp, [&] {
        if (!pieces || !n) fail(SPM_ERR_ARG, "spm_encode_pieces: output pointers are NULL");
        check_text(text, len);
        std::vector<std::string> v;
        auto st = sp->proc.Encode(std::string_view(text ? text : "", len), &v);
        if (!st.ok()) fail(SPM_ERR_INTERNAL, "SentencePiece encode failed: " + status_text(st));
        size_t bytes = (v.size() + 1) * sizeof(char *);
        for (const auto &s : v) bytes += s.size() + 1;
        auto **arr = static_cast<char **>(malloc(bytes));
        if (!arr) throw std::bad_alloc();
        char *dst = reinterpret_cast<char *>(arr + v.size() + 1);
        for (size_t i = 0; i < v.size(); i++) {
            arr[i] = dst;
            memcpy(dst, v[i].c_str(), v[i].size() + 1);
            dst += v[i].size() + 1;
        }
        arr[v.size()] = nullptr;
        *pieces = arr;
        *n = v.size();
    });
}

int spm_decode_ids(Spm *sp, const int32_t *ids, size_t n, char **text, size_t *len) {
    if (text) *text = nullptr;
    if (len) *len = 0;
    return on_handle(sp, [&] {
        if (!text) fail(SPM_ERR_ARG, "spm_decode_ids: output pointer is NULL");
        if (!ids && n > 0) fail(SPM_ERR_ARG, "spm_decode_ids: ids are NULL");
        int vs = sp->proc.GetPieceSize();
        std::vector<int> v(n);
        for (size_t i = 0; i < n; i++) {
            if (!check_id(sp, ids[i]))
                fail(SPM_ERR_RANGE, strf("id %d at position %zu is out of range [0, %d)", (int)ids[i], i, vs));
            v[i] = ids[i];
        }
        std::string s;
        auto st = sp->proc.Decode(v, &s);
        if (!st.ok()) fail(SPM_ERR_INTERNAL, "SentencePiece decode failed: " + status_text(st));
        // valid pieces can still decode to bad text through a corrupt
        // unk_surface or denormalizer (found by tests/fuzz/spm.c)
        if (const char *why = bad_text(s)) fail(SPM_ERR_MODEL, std::string("decoded text ") + why + " (corrupt model)");
        char *p = static_cast<char *>(malloc(s.size() + 1));
        if (!p) throw std::bad_alloc();
        memcpy(p, s.c_str(), s.size() + 1);
        *text = p;
        if (len) *len = s.size();
    });
}

int spm_vocab_size(const Spm *sp) { return sp ? sp->proc.GetPieceSize() : -1; }

int32_t spm_piece_to_id(const Spm *sp, const char *piece) {
    if (!sp || !piece) return -1;
    try {
        return sp->proc.PieceToId(piece);
    } catch (...) {
        return -1;
    }
}

int spm_id_to_piece(Spm *sp, int32_t id, char *buf, size_t cap) {
    return on_handle(sp, [&] {
        if (!buf && cap > 0) fail(SPM_ERR_ARG, "spm_id_to_piece: buffer is NULL");
        if (!check_id(sp, id))
            fail(SPM_ERR_RANGE, strf("piece id %d is out of range [0, %d)", (int)id, sp->proc.GetPieceSize()));
        const std::string &s = sp->proc.IdToPiece(id);
        if (cap < s.size() + 1)
            fail(SPM_ERR_RANGE, strf("piece %d needs %zu bytes, the buffer holds %zu", (int)id, s.size() + 1, cap));
        memcpy(buf, s.c_str(), s.size() + 1);
    });
}

int32_t spm_unk_id(const Spm *sp) { return sp ? sp->proc.unk_id() : -1; }
int32_t spm_bos_id(const Spm *sp) { return sp ? sp->proc.bos_id() : -1; }
int32_t spm_eos_id(const Spm *sp) { return sp ? sp->proc.eos_id() : -1; }
int32_t spm_pad_id(const Spm *sp) { return sp ? sp->proc.pad_id() : -1; }

int spm_is_control(const Spm *sp, int32_t id) { return sp && check_id(sp, id) && sp->proc.IsControl(id); }
int spm_is_unknown(const Spm *sp, int32_t id) { return sp && check_id(sp, id) && sp->proc.IsUnknown(id); }

}  // extern "C"
