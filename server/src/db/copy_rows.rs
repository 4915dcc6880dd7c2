//! Prediction rows in PostgreSQL's binary COPY format, for the writer's first attempt at a batch: COPY
//! fills heap pages many rows at a time, where `INSERT ... SELECT FROM UNNEST` inserts and logs each row
//! alone, and the binary form spares the server parsing numbers, times and ids from text.
//!
//! The layout is the one the COPY documentation describes: a signature, a flags word and an empty
//! header extension; per row a field count, then each field as its length (-1 for NULL) and its bytes
//! in the type's binary send format; a -1 field count to end.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::writer::PredictionRow;

/// The statement the rows are sent to; the columns in the order `encode` writes them.
pub const COPY: &str = "COPY predictions (id, request_id, model, model_version, client_id, created_at, \
     queue_us, compute_us, total_us, batch_size, outcome, error, payload, response, predicted_class, \
     predicted_score, protocol) FROM STDIN WITH (FORMAT binary)";

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
const FIELDS: i16 = 17;
/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00:00 UTC).
const POSTGRES_EPOCH_US: i64 = 946_684_800_000_000;
/// jsonb's binary form is a version byte before the JSON text.
const JSONB_VERSION: u8 = 1;

/// The whole COPY stream for `rows`.
pub fn encode(rows: &[PredictionRow]) -> Vec<u8> {
    let text_bytes: usize = rows.iter().map(PredictionRow::bytes).sum();
    let mut out = Vec::with_capacity(SIGNATURE.len() + 8 + text_bytes + 2);
    out.extend_from_slice(SIGNATURE);
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    for row in rows {
        encode_row(&mut out, row);
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

fn encode_row(out: &mut Vec<u8>, row: &PredictionRow) {
    let p = &row.prediction;
    out.extend_from_slice(&FIELDS.to_be_bytes());
    uuid(out, p.id);
    text(out, p.request_id.as_deref());
    text(out, Some(&p.model));
    field(out, Some(&p.model_version.to_be_bytes()));
    text(out, p.client_id.as_deref());
    timestamptz(out, p.created_at);
    field(out, Some(&p.queue_us.to_be_bytes()));
    field(out, Some(&p.compute_us.to_be_bytes()));
    field(out, Some(&p.total_us.to_be_bytes()));
    field(out, Some(&p.batch_size.to_be_bytes()));
    text(out, Some(&p.outcome));
    text(out, p.error.as_deref());
    jsonb(out, row.payload.as_deref());
    jsonb(out, row.response.as_deref());
    field(out, p.predicted_class.map(i32::to_be_bytes).as_ref().map(|b| &b[..]));
    field(out, p.predicted_score.map(f32::to_be_bytes).as_ref().map(|b| &b[..]));
    text(out, Some(&p.protocol));
}

/// One field: its length and bytes, or -1 for NULL.
fn field(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        Some(bytes) => parts(out, &[bytes]),
    }
}

/// One non-NULL field made of `pieces` one after the other, written without joining them first. A
/// field longer than i32::MAX bytes cannot be sent; it is written as too long for the server to
/// accept (-2 reads as an invalid length, a data error), which makes the writer fall back to
/// row-by-row INSERTs that refuse that row alone.
fn parts(out: &mut Vec<u8>, pieces: &[&[u8]]) {
    match i32::try_from(pieces.iter().map(|p| p.len()).sum::<usize>()) {
        Ok(len) => {
            out.extend_from_slice(&len.to_be_bytes());
            pieces.iter().for_each(|p| out.extend_from_slice(p));
        }
        Err(_) => out.extend_from_slice(&(-2i32).to_be_bytes()),
    }
}

fn text(out: &mut Vec<u8>, value: Option<&str>) {
    field(out, value.map(str::as_bytes));
}

fn uuid(out: &mut Vec<u8>, id: Uuid) {
    field(out, Some(id.as_bytes()));
}

fn timestamptz(out: &mut Vec<u8>, at: DateTime<Utc>) {
    field(out, Some(&(at.timestamp_micros() - POSTGRES_EPOCH_US).to_be_bytes()));
}

fn jsonb(out: &mut Vec<u8>, json: Option<&str>) {
    match json {
        None => field(out, None),
        Some(json) => parts(out, &[&[JSONB_VERSION], json.as_bytes()]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::queries::Prediction;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn an_empty_batch_is_the_signature_an_empty_header_and_the_trailer() {
        let mut expected = b"PGCOPY\n\xff\r\n\0".to_vec();
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        assert_eq!(encode(&[]), expected);
    }

    #[test]
    fn postgres_counts_time_in_microseconds_from_2000() {
        let mut out = Vec::new();
        timestamptz(&mut out, at("2000-01-01T00:00:01.5Z"));
        assert_eq!(out, [&8i32.to_be_bytes()[..], &1_500_000i64.to_be_bytes()].concat());
    }

    #[test]
    fn a_row_has_seventeen_fields_in_the_statements_column_order() {
        let id = Uuid::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
        let row = PredictionRow {
            prediction: Prediction {
                id,
                request_id: Some("r".into()),
                client_id: None,
                queue_us: 2,
                compute_us: 3,
                total_us: 5,
                batch_size: 4,
                predicted_class: Some(7),
                predicted_score: Some(0.5),
                ..Prediction::answered("m", 1, at("2000-01-01T00:00:00Z"))
            },
            payload: None,
            response: Some("{}".into()),
        };
        let mut out = Vec::new();
        encode_row(&mut out, &row);
        let expected: Vec<u8> = [
            &17i16.to_be_bytes()[..],
            &16i32.to_be_bytes(),
            id.as_bytes(),
            &1i32.to_be_bytes(),
            b"r",
            &1i32.to_be_bytes(),
            b"m",
            &8i32.to_be_bytes(),
            &1i64.to_be_bytes(),
            &(-1i32).to_be_bytes(),
            &8i32.to_be_bytes(),
            &0i64.to_be_bytes(),
            &8i32.to_be_bytes(),
            &2i64.to_be_bytes(),
            &8i32.to_be_bytes(),
            &3i64.to_be_bytes(),
            &8i32.to_be_bytes(),
            &5i64.to_be_bytes(),
            &4i32.to_be_bytes(),
            &4i32.to_be_bytes(),
            &7i32.to_be_bytes(),
            b"success",
            &(-1i32).to_be_bytes(),
            &(-1i32).to_be_bytes(),
            &3i32.to_be_bytes(),
            &[1],
            b"{}",
            &4i32.to_be_bytes(),
            &7i32.to_be_bytes(),
            &4i32.to_be_bytes(),
            &0.5f32.to_be_bytes(),
            &4i32.to_be_bytes(),
            b"rest",
        ]
        .concat();
        assert_eq!(out, expected);
    }
}
