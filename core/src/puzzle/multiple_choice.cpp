#include <tessera/engine/error.hpp>
#include <tessera/puzzle/multiple_choice.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <map>
#include <optional>

namespace tessera::puzzle {

namespace {

std::string field(const nlohmann::json& j, const char* key, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_string())
    throw Error(where + ": expected a string field '" + key + "' (an MMLU line has question, " +
                "answer_a..answer_d, correct_answer and topic)");
  return it->get<std::string>();
}

}  // namespace

std::vector<ChoiceQuestion> read_mmlu(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    std::error_code ec;
    throw Error(path.string() + ": " +
                (std::filesystem::exists(path, ec) ? "cannot read the MMLU file"
                                                   : "no such MMLU file (scripts/fetch-mmlu.sh "
                                                     "fetches it)"));
  }
  std::vector<ChoiceQuestion> out;
  std::string line;
  for (int64_t number = 1; std::getline(file, line); ++number) {
    const std::string where = path.string() + ":" + std::to_string(number);
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      throw Error(where + ": not JSON (" + e.what() + ")");
    }
    if (!j.is_object()) throw Error(where + ": expected a JSON object, got " + j.type_name());
    const std::string answer = field(j, "correct_answer", where);
    if (answer == "answer") continue;  // a stray CSV header line of the source
    ChoiceQuestion q;
    q.where = where;
    q.subject = field(j, "topic", where);
    q.question = field(j, "question", where);
    const char* keys[] = {"answer_a", "answer_b", "answer_c", "answer_d"};
    for (size_t i = 0; i < 4; ++i) q.choices[i] = field(j, keys[i], where);
    if (answer.size() != 1 || answer[0] < 'A' || answer[0] > 'D')
      throw Error(where + ": correct_answer is \"" + answer + "\"; expected A, B, C or D");
    q.answer = answer[0] - 'A';
    out.push_back(std::move(q));
  }
  if (out.empty()) throw Error(path.string() + ": no questions");
  return out;
}

std::vector<ChoiceQuestion> first_per_subject(const std::vector<ChoiceQuestion>& questions,
                                              int32_t per_subject) {
  std::map<std::string, std::vector<const ChoiceQuestion*>> by_subject;
  for (const ChoiceQuestion& q : questions) {
    auto& list = by_subject[q.subject];
    if (per_subject == 0 || static_cast<int32_t>(list.size()) < per_subject) list.push_back(&q);
  }
  std::vector<ChoiceQuestion> out;
  for (const auto& [subject, list] : by_subject)
    for (const ChoiceQuestion* q : list) out.push_back(*q);
  return out;
}

std::string choice_prompt(const ChoiceQuestion& question) {
  std::string p = "The following is a multiple choice question about " + question.subject +
                  ".\n\n" + question.question + "\n";
  for (size_t i = 0; i < 4; ++i)
    p += std::string(1, static_cast<char>('A' + i)) + ". " + question.choices[i] + "\n";
  return p + "Answer:";
}

size_t ChoicePrompts::longest() const {
  size_t n = 0;
  for (const auto& p : prompts) n = std::max(n, p.size());
  return n;
}

ChoicePrompts tokenize_choices(const std::vector<ChoiceQuestion>& questions,
                               const Tokenizer& tokenizer, int32_t max_tokens) {
  if (max_tokens < 2) throw Error("multiple choice: max_tokens must be at least 2");
  ChoicePrompts out;
  // The letters as the tokens that follow "Answer:": " A" .. " D" when each is one token;
  // otherwise the prompt ends in "Answer: " and the letters are "A" .. "D".
  const auto letter_ids = [&](const char* before) -> std::optional<std::array<int32_t, 4>> {
    std::array<int32_t, 4> ids{};
    for (size_t i = 0; i < 4; ++i) {
      const std::vector<int32_t> t =
          tokenizer.encode(std::string(before) + static_cast<char>('A' + i), {false, false});
      if (t.size() != 1) return std::nullopt;
      ids[i] = t[0];
    }
    return ids;
  };
  std::string suffix;
  if (const auto spaced = letter_ids(" ")) {
    out.letters = *spaced;
  } else if (const auto bare = letter_ids("")) {
    out.letters = *bare;
    suffix = " ";
  } else {
    throw Error(
        "multiple choice: neither \" A\"..\" D\" nor \"A\"..\"D\" are one token each with this "
        "tokenizer; scoring needs one token per answer letter");
  }
  EncodeOptions options;
  options.parse_special = false;  // question text is data, never control tokens
  options.add_bos = tokenizer.add_bos_by_default() && tokenizer.bos_id().has_value();
  for (const ChoiceQuestion& q : questions) {
    std::vector<int32_t> ids = tokenizer.encode(choice_prompt(q) + suffix, options);
    if (static_cast<int32_t>(ids.size()) > max_tokens) {
      ids.erase(ids.begin(), ids.end() - max_tokens);
      ++out.truncated;
    }
    out.prompts.push_back(std::move(ids));
    out.answers.push_back(q.answer);
  }
  return out;
}

ChoiceScore score_choices(Model& model, const ChoicePrompts& prompts,
                          std::vector<int32_t>* chosen) {
  const int32_t vocab = model.vocab();
  for (const int32_t id : prompts.letters)
    if (id < 0 || id >= vocab)
      throw Error("multiple choice: a letter's token id " + std::to_string(id) +
                  " is outside the model's vocabulary of " + std::to_string(vocab));
  if (static_cast<int64_t>(prompts.longest()) > model.capacity())
    throw Error("multiple choice: a prompt has " + std::to_string(prompts.longest()) +
                " tokens; the model's slots hold " + std::to_string(model.capacity()));
  ChoiceScore score;
  if (chosen != nullptr) chosen->clear();
  const size_t n = prompts.prompts.size();
  const auto per_pass = static_cast<size_t>(std::max(1, model.slots()));
  std::vector<float> logits;
  for (size_t first = 0; first < n; first += per_pass) {
    const size_t count = std::min(per_pass, n - first);
    ForwardBatch batch;
    batch.offsets.push_back(0);
    batch.last_only = true;
    for (size_t i = 0; i < count; ++i) {
      const auto slot = static_cast<int32_t>(i);
      model.reset(slot);
      batch.slots.push_back(slot);
      const std::vector<int32_t>& p = prompts.prompts[first + i];
      batch.tokens.insert(batch.tokens.end(), p.begin(), p.end());
      batch.offsets.push_back(static_cast<int32_t>(batch.tokens.size()));
    }
    logits.resize(count * static_cast<size_t>(vocab));
    model.forward(batch, logits.data(), nullptr);
    for (size_t i = 0; i < count; ++i) {
      const float* row = logits.data() + i * static_cast<size_t>(vocab);
      int32_t best = 0;  // ties go to the earlier letter
      for (int32_t c = 1; c < 4; ++c)
        if (row[prompts.letters[c]] > row[prompts.letters[best]]) best = c;
      if (chosen != nullptr) chosen->push_back(best);
      ++score.questions;
      if (best == prompts.answers[first + i]) ++score.correct;
    }
  }
  return score;
}

}  // namespace tessera::puzzle
