// Asserts that a call throws ekv::Error whose message contains every given fragment
// (tests pass the file name as one of them: every error must name its file).
#pragma once

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>

#include "ekv/core/error.hpp"

#define EXPECT_EKV_ERROR(statement, ...)                                                         \
  do {                                                                                         \
    bool thrown_ = false;                                                                      \
    try {                                                                                      \
      statement;                                                                               \
    } catch (const ::ekv::Error& e_) {                                                         \
      thrown_ = true;                                                                          \
      const std::string message_ = e_.what();                                                  \
      for (const std::string fragment_ : std::initializer_list<std::string>{__VA_ARGS__})      \
        EXPECT_NE(message_.find(fragment_), std::string::npos)                                 \
            << "message lacks \"" << fragment_ << "\": " << message_;                          \
    }                                                                                          \
    EXPECT_TRUE(thrown_) << "expected an ekv::Error from " #statement;                        \
  } while (0)
