//! Confirmation letters, as vendors take them: the checks every vendor makes before an upload, and
//! the template a vendor offers. Vendor-neutral: the built-in CA and UCloud use the same checks.

use super::ProviderError;

/// Largest confirmation letter accepted, as vendors limit uploads.
pub const MAX_LETTER_BYTES: usize = 10 * 1024 * 1024;

/// A file the vendor offers the user, such as the confirmation-letter template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VendorFile {
    pub file_name: String,
    pub data: Vec<u8>,
}

/// Refuses letters a vendor would refuse: empty, too big, or not a PDF, JPEG or PNG.
pub fn check_letter(letter: &[u8], file_name: &str) -> Result<(), ProviderError> {
    if letter.is_empty() {
        return Err(ProviderError::permanent(format!("the confirmation letter {file_name:?} is empty")));
    }
    if letter.len() > MAX_LETTER_BYTES {
        return Err(ProviderError::permanent(format!(
            "the confirmation letter {file_name:?} is {} bytes; the limit is {MAX_LETTER_BYTES}: scan it at a lower resolution",
            letter.len()
        )));
    }
    let known =
        letter.starts_with(b"%PDF") || letter.starts_with(&[0xFF, 0xD8, 0xFF]) || letter.starts_with(b"\x89PNG");
    if !known {
        return Err(ProviderError::permanent(format!(
            "the confirmation letter {file_name:?} is not a PDF, JPEG or PNG file: store the scanned, stamped letter"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters() {
        assert!(check_letter(b"%PDF-1.4 ...", "a.pdf").is_ok());
        assert!(check_letter(b"\x89PNG\r\n", "a.png").is_ok());
        assert!(check_letter(b"", "a.pdf").unwrap_err().message.contains("empty"));
        assert!(check_letter(b"hello", "a.txt").unwrap_err().message.contains("not a PDF"));
        assert!(check_letter(&vec![b'%'; MAX_LETTER_BYTES + 1], "a.pdf").unwrap_err().message.contains("limit"));
    }
}
