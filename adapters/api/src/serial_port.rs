//! What adapters on a serial port (a UART, USB serial, an RS-485 HAT) share about its framing.

/// Parity of each character on the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Parity {
    #[default]
    None,
    Even,
    Odd,
}

impl Parity {
    /// The letter of the usual framing notation (`8N1`, `8E1`).
    pub fn letter(self) -> char {
        match self {
            Parity::None => 'N',
            Parity::Even => 'E',
            Parity::Odd => 'O',
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_of_the_framing_notation() {
        assert_eq!(Parity::default(), Parity::None);
        let letters: String = [Parity::None, Parity::Even, Parity::Odd]
            .into_iter()
            .map(Parity::letter)
            .collect();
        assert_eq!(letters, "NEO");
    }
}
