// ModelSource: a planted tiny model read from GGUF comes back in the HF layout, survives
// the HF writer and reader unchanged, and the HF reader handles sharded folders.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <csignal>

#include <chrono>
#include <fstream>

#include "ekv/core/atomic_output.hpp"
#include "ekv/core/log.hpp"
#include "ekv/core/mapped_file.hpp"
#include "ekv/core/read_file.hpp"
#include "ekv/io/gguf.hpp"
#include "ekv/io/safetensors.hpp"
#include "ekv/model/hf_writer.hpp"
#include "ekv/model/model_source.hpp"
#include "ekv/model/tensor_names.hpp"
#include "ekv/model/tokenizer.hpp"
#include "expect_error.hpp"
#include "gguf_builder.hpp"

namespace ekv::test {
namespace {

namespace fs = std::filesystem;

class ModelSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = temp_dir("model");
    gguf_path_ = dir_ / "tiny.gguf";
    write_file(gguf_path_, tiny_model_gguf(tiny_).build());
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path dir_;
  fs::path gguf_path_;
  TinyModel tiny_ = make_tiny_model(11);
};

void expect_same_layer(const LayerWeights& a, const LayerWeights& b) {
  EXPECT_EQ(a.attn_norm, b.attn_norm);
  EXPECT_EQ(a.wq, b.wq);
  EXPECT_EQ(a.wk, b.wk);
  EXPECT_EQ(a.wv, b.wv);
  EXPECT_EQ(a.wo, b.wo);
  EXPECT_EQ(a.ffn_norm, b.ffn_norm);
  EXPECT_EQ(a.w_gate, b.w_gate);
  EXPECT_EQ(a.w_up, b.w_up);
  EXPECT_EQ(a.w_down, b.w_down);
}

TEST_F(ModelSourceTest, GgufConfigAndHfLayout) {
  const auto model = ModelSource::open(gguf_path_);
  EXPECT_EQ(model->format(), "gguf");
  const ModelConfig& c = model->config();
  EXPECT_EQ(c.layers, 2);
  EXPECT_EQ(c.heads, 4);
  EXPECT_EQ(c.kv_heads, 2);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.group_size(), 2);
  EXPECT_FALSE(c.tied_embeddings);
  // The builder stored Q/K permuted the llama.cpp way; loading must undo exactly that.
  for (int l = 0; l < c.layers; ++l) expect_same_layer(model->layer(l), tiny_.layers[size_t(l)]);
  const GlobalWeights g = model->globals();
  EXPECT_EQ(g.embedding, tiny_.globals.embedding);
  EXPECT_EQ(g.output, tiny_.globals.output);
  EXPECT_EQ(g.final_norm, tiny_.globals.final_norm);
}

TEST_F(ModelSourceTest, RawGgufRowsAreInterleaved) {
  // Without the unpermute the q rows would differ: guards against a silent no-op.
  GgufFile gguf(gguf_path_);
  const auto* q = gguf.find_tensor("blk.0.attn_q.weight");
  const auto bytes = gguf.tensor_bytes(*q);
  std::vector<float> raw(bytes.size() / 4);
  std::memcpy(raw.data(), bytes.data(), bytes.size());
  const Matrix& hf = tiny_.layers[0].wq;
  const int cols = int(hf.cols());
  // GGUF row 1 of head 0 is HF row head_dim/2 (chunk 0's second element).
  for (int j = 0; j < cols; ++j) EXPECT_EQ(raw[size_t(1 * cols + j)], hf(4, j));
  EXPECT_NE(raw[size_t(1 * cols)], hf(1, 0));
}

TEST_F(ModelSourceTest, HfWriterRoundTrip) {
  const auto gguf = ModelSource::open(gguf_path_);
  const fs::path folder = dir_ / "hf";
  write_hf_checkpoint(*gguf, folder, DType::f32);
  EXPECT_FALSE(fs::exists(dir_ / "hf.tmp"));
  const auto hf = ModelSource::open(folder);
  EXPECT_EQ(hf->format(), "hf");
  EXPECT_EQ(config_to_hf(hf->config()), config_to_hf(gguf->config()));
  for (int l = 0; l < hf->config().layers; ++l) expect_same_layer(hf->layer(l), gguf->layer(l));
  EXPECT_EQ(hf->globals().output, gguf->globals().output);
  // Same config and shapes but other dtypes in another format: fingerprints are stable per
  // source and differ across formats only through names/dtypes, never at random.
  EXPECT_EQ(hf->fingerprint(), ModelSource::open(folder)->fingerprint());
  EXPECT_EQ(hf->fingerprint().size(), 64u);
}

// An export killed before its rename left DIR.tmp with a complete-looking model.safetensors
// that ekv-check accepted; the rename is the completion marker, so a .tmp is refused.
TEST_F(ModelSourceTest, UnfinishedOutputsAreRefused) {
  const auto gguf = ModelSource::open(gguf_path_);
  write_hf_checkpoint(*gguf, dir_ / "hf", DType::f32);
  fs::rename(dir_ / "hf", dir_ / "hf.tmp");
  EXPECT_EKV_ERROR(ModelSource::open(dir_ / "hf.tmp"), "hf.tmp", "unfinished output");
  fs::copy_file(gguf_path_, dir_ / "tiny.gguf.tmp");
  EXPECT_EKV_ERROR(ModelSource::open(dir_ / "tiny.gguf.tmp"), "tiny.gguf.tmp", "unfinished output");
  // ekv-uptrain's folder while it is assembled: refused too, except by the pack step it runs.
  fs::rename(dir_ / "hf.tmp", dir_ / "hf.partial");
  EXPECT_EKV_ERROR(ModelSource::open(dir_ / "hf.partial"), "hf.partial", "unfinished output", "ekv-uptrain");
  EXPECT_EQ(open_hf_model(dir_ / "hf.partial")->config().layers, gguf->config().layers);
  // Issue 33: the refusal looked at the name given; the resolved path and its folders count too.
  fs::rename(dir_ / "hf.partial", dir_ / "hf.tmp");
  EXPECT_EKV_ERROR(ModelSource::open(dir_ / "hf.tmp" / "."), "unfinished output", "hf.tmp");
  fs::create_directory_symlink(dir_ / "hf.tmp", dir_ / "hf-link");
  EXPECT_EKV_ERROR(ModelSource::open(dir_ / "hf-link"), "hf-link", "unfinished output", "hf.tmp");
  EXPECT_EKV_ERROR(require_committed(dir_ / "hf.tmp" / "config.json"), "unfinished output", "hf.tmp");
  EXPECT_EKV_ERROR(require_committed(dir_ / "hf-link" / "config.json"), "unfinished output", "hf.tmp");
  EXPECT_NO_THROW(require_committed(dir_ / "tmp" / "model.gguf"));  // a folder named tmp is no temporary
}

// Issue 33: a GGUF (or safetensors) cut short while a tool had it mapped killed the tool with
// "Bus error" and no file named. The SIGBUS handler names the file and exits with status 1.
TEST_F(ModelSourceTest, AFileTruncatedWhileMappedIsNamed) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const fs::path copy = dir_ / "shrinking.gguf";
  fs::copy_file(gguf_path_, copy);
  EXPECT_EXIT(
      {
        const auto model = ModelSource::open(copy);
        fs::resize_file(copy, 64);
        model->layer(model->config().layers - 1);
      },
      ::testing::ExitedWithCode(1), "shrinking.gguf: the file shrank while ekv was reading it");
  // Another fault still dies as a fault.
  EXPECT_DEATH(::raise(SIGBUS), "");
}

// Issue 33: a FIFO given as a model, a config.json or a GGUF blocked its reader forever.
TEST_F(ModelSourceTest, FifosAndDevicesAreRefusedNotWaitedOn) {
  const fs::path fifo = dir_ / "model.gguf";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_EKV_ERROR(ModelSource::open(fifo), "model.gguf", "a FIFO", "not a file or folder");
  EXPECT_EKV_ERROR(MappedFile{fifo}, "model.gguf", "a FIFO");
  EXPECT_EKV_ERROR(read_file(fifo), "model.gguf", "a FIFO");
  EXPECT_EKV_ERROR(read_file("/dev/zero"), "/dev/zero", "a character device");
  const auto gguf = ModelSource::open(gguf_path_);
  write_hf_checkpoint(*gguf, dir_ / "hf", DType::f32);
  fs::remove(dir_ / "hf" / "config.json");
  ASSERT_EQ(::mkfifo((dir_ / "hf" / "config.json").c_str(), 0600), 0);
  EXPECT_EKV_ERROR(ModelSource::open(dir_ / "hf"), "config.json", "a FIFO");
  fs::remove(dir_ / "hf" / "tokenizer.json");
  ASSERT_EQ(::mkfifo((dir_ / "hf" / "tokenizer.json").c_str(), 0600), 0);
  EXPECT_EKV_ERROR(Tokenizer::from_hf_json(dir_ / "hf" / "tokenizer.json"), "tokenizer.json", "a FIFO");
}

// The fingerprint covered names and shapes only: artifacts of one model passed with an edited
// copy of it. It now covers the weight bytes, hashed once and cached beside the file.
TEST_F(ModelSourceTest, FingerprintCoversTheWeights) {
  const std::string original = ModelSource::open(gguf_path_)->fingerprint();
  const fs::path cache = gguf_path_.string() + ".ekv-sha256";
  ASSERT_TRUE(fs::exists(cache));
  EXPECT_EQ(ModelSource::open(gguf_path_)->fingerprint(), original);
  TinyModel edited = tiny_;
  edited.layers[1].wv(0, 0) += 0.5f;
  write_file(dir_ / "edited.gguf", tiny_model_gguf(edited).build());
  EXPECT_NE(ModelSource::open(dir_ / "edited.gguf")->fingerprint(), original);
  // The cache is what a second open reads: a forged digest under the right key shows through.
  std::string line;
  std::getline(std::ifstream(cache), line);
  std::ofstream(cache) << line.substr(0, line.size() - 64) << std::string(64, '0') << "\n";
  EXPECT_NE(ModelSource::open(gguf_path_)->fingerprint(), original);
  // An edit in place moves the modification time, which invalidates the cached digest.
  const auto mtime = fs::last_write_time(gguf_path_);
  fs::copy_file(dir_ / "edited.gguf", gguf_path_, fs::copy_options::overwrite_existing);
  fs::last_write_time(gguf_path_, mtime + std::chrono::seconds(1));
  EXPECT_EQ(ModelSource::open(gguf_path_)->fingerprint(), ModelSource::open(dir_ / "edited.gguf")->fingerprint());
}

TEST_F(ModelSourceTest, HfWriterHalfPrecision) {
  const auto gguf = ModelSource::open(gguf_path_);
  write_hf_checkpoint(*gguf, dir_ / "hf16", DType::bf16);
  const auto hf = ModelSource::open(dir_ / "hf16");
  EXPECT_EQ(hf->tensor(layer_tensor_name(0, "self_attn.q_proj")).dtype, DType::bf16);
  const Matrix a = hf->layer(0).wq, b = gguf->layer(0).wq;
  EXPECT_LT((a - b).cwiseAbs().maxCoeff(), 0.01f * b.cwiseAbs().maxCoeff());
  EXPECT_GT((a - b).cwiseAbs().maxCoeff(), 0.0f);  // it really was rounded
}

TEST_F(ModelSourceTest, ShardedFolder) {
  const auto gguf = ModelSource::open(gguf_path_);
  const fs::path folder = dir_ / "sharded";
  fs::create_directory(folder);
  {
    std::ofstream config(folder / "config.json");
    config << config_to_hf(gguf->config()).dump();
  }
  // Two shards: layer 0 + ends in the first, layer 1 in the second.
  SafetensorsWriter first(folder / "model-00001-of-00002.safetensors");
  SafetensorsWriter second(folder / "model-00002-of-00002.safetensors");
  nlohmann::json map = nlohmann::json::object();
  const auto tensors = expected_tensors(gguf->config());
  for (const auto& t : tensors) {
    const bool in_second = t.name.find("layers.1.") != std::string::npos;
    (in_second ? second : first).declare(t.name, DType::f32, t.shape);
    map[t.name] = in_second ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors";
  }
  for (const auto& t : tensors)
    (t.name.find("layers.1.") != std::string::npos ? second : first).write_floats(t.name, gguf->load(t.name));
  first.commit();
  second.commit();
  {
    std::ofstream index(folder / "model.safetensors.index.json");
    index << nlohmann::json{{"metadata", {{"total_size", 0}}}, {"weight_map", map}}.dump();
  }
  const auto hf = ModelSource::open(folder);
  expect_same_layer(hf->layer(1), gguf->layer(1));
  EXPECT_NE(hf->tensor(layer_tensor_name(1, "mlp.up_proj")).file.find("00002"), std::string::npos);

  // An index that points outside the folder is refused.
  map[tensors.front().name] = "../tiny.gguf";
  {
    std::ofstream index(folder / "model.safetensors.index.json");
    index << nlohmann::json{{"weight_map", map}}.dump();
  }
  const std::string index_path = (folder / "model.safetensors.index.json").string();
  EXPECT_EKV_ERROR(ModelSource::open(folder), index_path, "not a plain file name");
}

TEST_F(ModelSourceTest, HfConfigErrorsNameTheField) {
  const fs::path folder = dir_ / "badconfig";
  fs::create_directory(folder);
  nlohmann::json config = config_to_hf(tiny_.config);
  config["num_attention_heads"] = "four";
  std::ofstream(folder / "config.json") << config.dump();
  const std::string path = (folder / "config.json").string();
  EXPECT_EKV_ERROR(ModelSource::open(folder), path, "num_attention_heads");
  config = config_to_hf(tiny_.config);
  config["model_type"] = "gpt_neox";
  std::ofstream(folder / "config.json") << config.dump();
  EXPECT_EKV_ERROR(ModelSource::open(folder), path, "model_type", "gpt_neox");
  config = config_to_hf(tiny_.config);
  config["num_key_value_heads"] = 3;
  std::ofstream(folder / "config.json") << config.dump();
  EXPECT_EKV_ERROR(ModelSource::open(folder), path, "KV head count 3");
  std::ofstream(folder / "config.json") << "{ not json";
  EXPECT_EKV_ERROR(ModelSource::open(folder), path, "not valid JSON");
}

// get<int>() used to truncate 576.5 and wrap huge counts; a missing rope_theta was a silent
// 10000 (now the same default, with a warning).
TEST_F(ModelSourceTest, HfConfigNumbersAreExact) {
  const nlohmann::json good = config_to_hf(tiny_.config);
  const std::string source = "config.json";
  nlohmann::json config = good;
  config["hidden_size"] = 32.5;
  EXPECT_EKV_ERROR(config_from_hf(config, source), source, "hidden_size", "expected an integer", "32.5");
  config = good;
  config["num_hidden_layers"] = std::int64_t(1) << 40;
  EXPECT_EKV_ERROR(config_from_hf(config, source), source, "num_hidden_layers", "out of range");
  config = good;
  config.erase("rope_theta");
  const auto warnings = log::warning_count();
  EXPECT_EQ(config_from_hf(config, source).rope_theta, 10000.0);
  EXPECT_EQ(log::warning_count(), warnings + 1);
}

// GGUF counts were cast to int: 2^40 layers read as 0 and 2^32 - 1 heads as -1, which later
// checks misreported ("partial RoPE ... expected -576").
TEST_F(ModelSourceTest, GgufCountsAreRefusedByKey) {
  auto metadata_only = [&](std::uint32_t heads, std::uint64_t layers) {
    GgufBuilder b;
    b.add_string("general.architecture", "llama");
    Bytes layer_count;
    put_string(layer_count, "llama.block_count");
    put_u32(layer_count, 10);  // GGUF UINT64
    put_u64(layer_count, layers);
    b.add_raw_kv(layer_count);
    b.add_u32("llama.embedding_length", 64);
    b.add_u32("llama.attention.head_count", heads);
    b.add_u32("llama.rope.dimension_count", 16);
    b.add_u32("llama.feed_forward_length", 128);
    b.add_u32("llama.context_length", 256);
    b.add_u32("llama.vocab_size", 100);
    b.add_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
    b.add_f32("llama.rope.freq_base", 10000.0f);
    const fs::path path = dir_ / "metadata.gguf";
    write_file(path, b.build());
    return path;
  };
  EXPECT_EQ(config_from_gguf(GgufFile(metadata_only(4, 2))).heads, 4);
  EXPECT_EKV_ERROR(config_from_gguf(GgufFile(metadata_only(4, std::uint64_t(1) << 40))), "llama.block_count",
                   "1099511627776", "not plausible");
  EXPECT_EKV_ERROR(config_from_gguf(GgufFile(metadata_only(0xFFFFFFFFu, 2))), "llama.attention.head_count",
                   "4294967295", "not plausible");
  EXPECT_EKV_ERROR(config_from_gguf(GgufFile(metadata_only(0, 2))), "head count 0");
}

TEST_F(ModelSourceTest, MissingPathNamed) {
  const std::string path = (dir_ / "nothing-here").string();
  EXPECT_EKV_ERROR(ModelSource::open(path), path, "no such file");
}

}  // namespace
}  // namespace ekv::test
