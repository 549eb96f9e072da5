// MMLU-style multiple choice: the reader (every error located at file:line, the stray header
// lines skipped), the per-subject pick, the prompt, the letters' tokens and truncation, and the
// scoring, which equals a naive forward of each prompt alone whatever the batch.
#include <gtest/gtest.h>

#include <tessera/engine/error.hpp>
#include <tessera/puzzle/multiple_choice.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "puzzle_fixtures.hpp"
#include "train_data_fixtures.hpp"

namespace tessera::puzzle {
namespace {

namespace fs = std::filesystem;
using test_fixtures::model_of;
using test_fixtures::parent_manifest;
using test_fixtures::parent_weights;

std::string line(const std::string& subject, const std::string& question,
                 const std::string& answer) {
  return R"({"question": ")" + question + R"(", "answer_a": "one", "answer_b": "two", )" +
         R"("answer_c": "three", "answer_d": "four", "correct_answer": ")" + answer +
         R"(", "topic": ")" + subject + "\"}\n";
}

class MultipleChoiceFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tessera-mc-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path write(const std::string& text) {
    const fs::path p = dir_ / "mmlu.jsonl";
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
  std::string error_of(const std::string& text) {
    const fs::path p = write(text);
    try {
      (void)read_mmlu(p);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }
  fs::path dir_;
};

TEST_F(MultipleChoiceFile, ReadsQuestionsAndSkipsTheStrayHeaderLines) {
  const std::string header =
      R"({"question": "question", "answer_a": "answer_a", "answer_b": "answer_b", )"
      R"("answer_c": "answer_c", "answer_d": "answer_d", "correct_answer": "answer", )"
      R"("topic": "anatomy"})"
      "\n";
  const fs::path p =
      write(line("anatomy", "Q1?", "C") + header + "\n" + line("virology", "Q2?", "A"));
  const std::vector<ChoiceQuestion> qs = read_mmlu(p);
  ASSERT_EQ(qs.size(), 2u);
  EXPECT_EQ(qs[0].subject, "anatomy");
  EXPECT_EQ(qs[0].question, "Q1?");
  EXPECT_EQ(qs[0].choices[3], "four");
  EXPECT_EQ(qs[0].answer, 2);
  EXPECT_EQ(qs[0].where, p.string() + ":1");
  EXPECT_EQ(qs[1].answer, 0);
  EXPECT_EQ(qs[1].where, p.string() + ":4");
}

TEST_F(MultipleChoiceFile, EveryBadLineIsLocated) {
  const std::string good = line("anatomy", "Q?", "B");
  EXPECT_NE(error_of(good + "{not json\n").find("mmlu.jsonl:2: not JSON"), std::string::npos);
  EXPECT_NE(error_of(good + "[1, 2]\n").find("mmlu.jsonl:2: expected a JSON object, got array"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"question": "Q", "correct_answer": "A", "topic": "x"})"
                     "\n")
                .find("mmlu.jsonl:1: expected a string field 'answer_a'"),
            std::string::npos);
  EXPECT_NE(error_of(good + line("anatomy", "Q?", "E"))
                .find("mmlu.jsonl:2: correct_answer is \"E\"; expected A, B, C or D"),
            std::string::npos);
  EXPECT_NE(error_of("").find("no questions"), std::string::npos);
  try {
    (void)read_mmlu(dir_ / "absent.jsonl");
    FAIL() << "read an absent file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no such MMLU file (scripts/fetch-mmlu.sh"),
              std::string::npos);
  }
}

TEST(MultipleChoice, FirstPerSubjectKeepsFileOrderWithinSortedSubjects) {
  std::vector<ChoiceQuestion> qs;
  for (const auto& [subject, q] :
       std::vector<std::pair<std::string, std::string>>{{"virology", "v1"},
                                                        {"anatomy", "a1"},
                                                        {"virology", "v2"},
                                                        {"anatomy", "a2"},
                                                        {"anatomy", "a3"}}) {
    ChoiceQuestion c;
    c.subject = subject;
    c.question = q;
    qs.push_back(c);
  }
  std::vector<std::string> got;
  for (const ChoiceQuestion& c : first_per_subject(qs, 2)) got.push_back(c.question);
  EXPECT_EQ(got, (std::vector<std::string>{"a1", "a2", "v1", "v2"}));
  EXPECT_EQ(first_per_subject(qs, 0).size(), 5u);
  EXPECT_EQ(first_per_subject(qs, 1).size(), 2u);
}

TEST(MultipleChoice, PromptLettersAndTruncation) {
  ChoiceQuestion q;
  q.subject = "anatomy";
  q.question = "Which?";
  q.choices = {"w", "x", "y", "z"};
  EXPECT_EQ(choice_prompt(q),
            "The following is a multiple choice question about anatomy.\n\nWhich?\nA. w\nB. x\n"
            "C. y\nD. z\nAnswer:");
  // One token per byte: " A" is two tokens, so the prompt ends in "Answer: " and the letters
  // are the bytes A..D.
  const Tokenizer& tokenizer = test::byte_tokenizer();
  const ChoicePrompts full = tokenize_choices({q}, tokenizer, 4096);
  ASSERT_EQ(full.prompts.size(), 1u);
  EXPECT_EQ(full.truncated, 0);
  EXPECT_EQ(full.prompts[0].size(), choice_prompt(q).size() + 1);
  EXPECT_EQ(tokenizer.decode(full.prompts[0]), choice_prompt(q) + " ");
  for (int32_t i = 0; i < 4; ++i)
    EXPECT_EQ(tokenizer.decode(std::vector<int32_t>{full.letters[static_cast<size_t>(i)]}),
              std::string(1, static_cast<char>('A' + i)));
  // A prompt over the limit keeps its end.
  const ChoicePrompts cut = tokenize_choices({q, q}, tokenizer, 10);
  EXPECT_EQ(cut.truncated, 2);
  EXPECT_EQ(cut.longest(), 10u);
  EXPECT_EQ(tokenizer.decode(cut.prompts[1]), "z\nAnswer: ");
  EXPECT_THROW((void)tokenize_choices({q}, tokenizer, 1), Error);
}

// Prompts of random ids within the fixture's vocabulary of 41.
ChoicePrompts random_prompts(int32_t count, std::array<int32_t, 4> letters) {
  ChoicePrompts p;
  p.letters = letters;
  for (int32_t i = 0; i < count; ++i) {
    const train::TrainBatch b =
        test::random_batch({5 + (7 * i) % 19}, 100 + static_cast<uint64_t>(i), 41);
    p.prompts.push_back(b.tokens);
    p.answers.push_back(i % 4);
  }
  return p;
}

TEST(MultipleChoice, ScoringEqualsEachPromptAloneThroughANaiveForward) {
  const ChoicePrompts prompts = random_prompts(9, {3, 11, 17, 29});
  auto model = model_of(parent_manifest(), parent_weights());  // 4 slots: passes of 4, 4, 1
  std::vector<int32_t> chosen;
  const ChoiceScore score = score_choices(*model, prompts, &chosen);
  ASSERT_EQ(chosen.size(), 9u);
  EXPECT_EQ(score.questions, 9);
  int64_t correct = 0;
  for (size_t i = 0; i < prompts.prompts.size(); ++i) {
    // The naive reference: every position's logits of the prompt alone, the last row's letters.
    auto alone = model_of(parent_manifest(), parent_weights());
    ForwardBatch f;
    f.slots = {0};
    f.offsets = {0, static_cast<int32_t>(prompts.prompts[i].size())};
    f.tokens = prompts.prompts[i];
    std::vector<float> logits(prompts.prompts[i].size() * 41);
    alone->forward(f, logits.data(), nullptr);
    const float* last = logits.data() + (prompts.prompts[i].size() - 1) * 41;
    int32_t best = 0;
    for (int32_t c = 1; c < 4; ++c)
      if (last[prompts.letters[static_cast<size_t>(c)]] >
          last[prompts.letters[static_cast<size_t>(best)]])
        best = c;
    EXPECT_EQ(chosen[i], best) << "question " << i;
    correct += best == prompts.answers[i] ? 1 : 0;
  }
  EXPECT_EQ(score.correct, correct);
  EXPECT_DOUBLE_EQ(score.accuracy(), static_cast<double>(correct) / 9.0);
}

TEST(MultipleChoice, TiesGoToTheEarlierLetter) {
  const ChoicePrompts prompts = random_prompts(5, {7, 7, 7, 7});
  auto model = model_of(parent_manifest(), parent_weights());
  std::vector<int32_t> chosen;
  const ChoiceScore score = score_choices(*model, prompts, &chosen);
  EXPECT_EQ(chosen, std::vector<int32_t>(5, 0));
  EXPECT_EQ(score.correct, 2);  // answers 0, 1, 2, 3, 0
}

TEST(MultipleChoice, RefusesLettersOutsideTheVocabularyAndPromptsOverCapacity) {
  auto model = model_of(parent_manifest(), parent_weights());
  EXPECT_THROW((void)score_choices(*model, random_prompts(1, {3, 11, 17, 41})), Error);
  ChoicePrompts long_prompt = random_prompts(1, {3, 11, 17, 29});
  long_prompt.prompts[0].assign(static_cast<size_t>(model->capacity()) + 1, 1);
  try {
    (void)score_choices(*model, long_prompt);
    FAIL() << "scored a prompt over the capacity";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the model's slots hold"), std::string::npos);
  }
}

}  // namespace
}  // namespace tessera::puzzle
