//! Message types shared by the example programs.
