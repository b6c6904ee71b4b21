//! Batches as the API reads them: a page of them, one by bid.

use crate::error::Result;

use super::Api;
use crate::extensions::batch::*;

impl Api {
    /// The batches still in Redis, newest first, up to `limit`.
    pub async fn batches(&self, limit: usize) -> Result<Vec<BatchStatus>> {
        let bids: Vec<String> = self
            .query(
                redis::cmd("ZREVRANGE")
                    .arg(self.keys().key("batches"))
                    .arg(0)
                    .arg(limit.max(1) as i64 - 1),
            )
            .await?;
        // Every batch's status in one round trip, five replies each.
        let mut pipe = redis::pipe();
        let names: Vec<String> = bids.iter().map(|bid| batch_key(self.keys(), bid)).collect();
        for key in &names {
            status_commands(&mut pipe, key);
        }
        let rows: Vec<std::result::Result<StatusRow, String>> =
            self.query_rows(&mut pipe, 5, &names).await?;
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for (bid, row) in bids.into_iter().zip(rows) {
            match row.map(|row| status_from(&bid, row)) {
                Ok(Some(status)) => out.push(status),
                Ok(None) => gone.push(bid),
                // Shown, not a failure of the whole list.
                Err(unreadable) => out.push(BatchStatus::unreadable(bid, unreadable)),
            }
        }
        if !gone.is_empty() {
            // Expired batches leave the index as they are found.
            let _: u64 = self
                .query(
                    redis::cmd("ZREM")
                        .arg(self.keys().key("batches"))
                        .arg(&gone),
                )
                .await?;
        }
        Ok(out)
    }

    /// Batch `bid`'s status; `None` if it does not exist (or expired).
    pub async fn batch(&self, bid: &str) -> Result<Option<BatchStatus>> {
        let mut pipe = redis::pipe();
        let key = batch_key(self.keys(), bid);
        status_commands(&mut pipe, &key);
        let rows: Vec<std::result::Result<StatusRow, String>> =
            self.query_rows(&mut pipe, 5, &[key]).await?;
        match rows.into_iter().next() {
            Some(Ok(row)) => Ok(status_from(bid, row)),
            Some(Err(unreadable)) => Ok(Some(BatchStatus::unreadable(bid.to_string(), unreadable))),
            None => Ok(None),
        }
    }
}
