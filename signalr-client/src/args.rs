//! What a hub method is called with: [`IntoArguments`].

use serde::{Serialize, ser::SerializeSeq as _};
use signalr_protocol::{Arguments, PayloadFormat, ProtocolError};

use crate::upload::Upload;

/// The arguments of a call: a tuple (`()` for none, `(x,)` for one, `(a, b)` for two, up to
/// 16), an array or a `Vec` of one type. Each element of a tuple is any `Serialize` value or
/// an [`Upload`], a client-to-server stream, in any position (as the official clients take a
/// `Subject` or a `ChannelReader` anywhere in the argument list).
///
/// ```no_run
/// # async fn run(conn: signalr_client::HubConnection) -> signalr_client::Result<()> {
/// use signalr_client::Upload;
///
/// let sum: i64 = conn.invoke("Add", (40, 2)).await?;
/// conn.send("Broadcast", ("chat", "hello")).await?;
/// let echoed: String = conn.invoke("Echo", ("one value",)).await?; // a one-tuple
/// let total: i64 = conn.invoke("Sum", (Upload::new(futures_util::stream::iter(1..=10)),)).await?;
/// let none: () = conn.invoke("NoResult", ()).await?;
/// # Ok(()) }
/// ```
///
/// Anything else does not compile: a hub call's arguments are a list, so a single value goes in
/// a one-tuple.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a list of hub arguments",
    label = "expected a tuple, an array or a Vec",
    note = "hub arguments are a list: `()` for none, `(x,)` for one value, `(a, b)` for two"
)]
pub trait IntoArguments {
    /// The values, encoded in `format`, and the uploads in their order. Not meant to be
    /// called directly.
    #[doc(hidden)]
    fn into_parts(self, format: PayloadFormat) -> Result<(Arguments, Vec<Upload>), ProtocolError>;
}

/// One element of an argument tuple: a value, or an [`Upload`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a hub argument",
    note = "a hub argument is any `Serialize` value, or an `Upload` (a client-to-server stream)"
)]
pub trait Argument {
    /// Whether this is an upload (not serialized among the values).
    #[doc(hidden)]
    fn is_upload(&self) -> bool;
    /// Adds the value to the arguments being serialized (uploads add nothing).
    #[doc(hidden)]
    fn serialize_into<S: serde::ser::SerializeSeq>(&self, seq: &mut S) -> Result<(), S::Error>;
    /// The upload, if this is one.
    #[doc(hidden)]
    fn into_upload(self) -> Option<Upload>;
}

impl<T: Serialize> Argument for T {
    fn is_upload(&self) -> bool {
        false
    }

    fn serialize_into<S: serde::ser::SerializeSeq>(&self, seq: &mut S) -> Result<(), S::Error> {
        seq.serialize_element(self)
    }

    fn into_upload(self) -> Option<Upload> {
        None
    }
}

impl Argument for Upload {
    fn is_upload(&self) -> bool {
        true
    }

    fn serialize_into<S: serde::ser::SerializeSeq>(&self, _: &mut S) -> Result<(), S::Error> {
        Ok(())
    }

    fn into_upload(self) -> Option<Upload> {
        Some(self)
    }
}

/// The values of a tuple, serialized as one list, uploads left out: one pass, no copies.
struct Values<'a, T>(&'a T);

macro_rules! tuples {
    ($($a:ident $i:tt),*) => {
        impl<'a, $($a: Argument),*> Serialize for Values<'a, ($($a,)*)> {
            #[allow(unused_mut, unused_variables)]
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let count = 0 $(+ usize::from(!(self.0).$i.is_upload()))*;
                let mut seq = serializer.serialize_seq(Some(count))?;
                $((self.0).$i.serialize_into(&mut seq)?;)*
                seq.end()
            }
        }

        impl<$($a: Argument),*> IntoArguments for ($($a,)*) {
            #[allow(non_snake_case, unused_mut)]
            fn into_parts(
                self,
                format: PayloadFormat,
            ) -> Result<(Arguments, Vec<Upload>), ProtocolError> {
                let arguments = Arguments::from_values(format, &Values(&self))?;
                let ($($a,)*) = self;
                let mut uploads = Vec::new();
                $(uploads.extend($a.into_upload());)*
                Ok((arguments, uploads))
            }
        }
    };
}

tuples!();
tuples!(A1 0);
tuples!(A1 0, A2 1);
tuples!(A1 0, A2 1, A3 2);
tuples!(A1 0, A2 1, A3 2, A4 3);
tuples!(A1 0, A2 1, A3 2, A4 3, A5 4);
tuples!(A1 0, A2 1, A3 2, A4 3, A5 4, A6 5);
tuples!(A1 0, A2 1, A3 2, A4 3, A5 4, A6 5, A7 6);
tuples!(A1 0, A2 1, A3 2, A4 3, A5 4, A6 5, A7 6, A8 7);
tuples!(A1 0, A2 1, A3 2, A4 3, A5 4, A6 5, A7 6, A8 7, A9 8);
tuples!(A1 0, A2 1, A3 2, A4 3, A5 4, A6 5, A7 6, A8 7, A9 8, A10 9);
tuples!(A1 0, A2 1, A3 2, A4 3, A5 4, A6 5, A7 6, A8 7, A9 8, A10 9, A11 10);
tuples!(A1 0, A2 1, A3 2, A4 3, A5 4, A6 5, A7 6, A8 7, A9 8, A10 9, A11 10, A12 11);
tuples!(A1 0, A2 1, A3 2, A4 3, A5 4, A6 5, A7 6, A8 7, A9 8, A10 9, A11 10, A12 11, A13 12);
tuples!(A1 0, A2 1, A3 2, A4 3, A5 4, A6 5, A7 6, A8 7, A9 8, A10 9, A11 10, A12 11, A13 12, A14 13);
tuples!(A1 0, A2 1, A3 2, A4 3, A5 4, A6 5, A7 6, A8 7, A9 8, A10 9, A11 10, A12 11, A13 12, A14 13, A15 14);
tuples!(A1 0, A2 1, A3 2, A4 3, A5 4, A6 5, A7 6, A8 7, A9 8, A10 9, A11 10, A12 11, A13 12, A14 13, A15 14, A16 15);

impl<T: Serialize, const N: usize> IntoArguments for [T; N] {
    fn into_parts(self, format: PayloadFormat) -> Result<(Arguments, Vec<Upload>), ProtocolError> {
        Ok((Arguments::from_values(format, &self[..])?, Vec::new()))
    }
}

impl<T: Serialize> IntoArguments for Vec<T> {
    fn into_parts(self, format: PayloadFormat) -> Result<(Arguments, Vec<Upload>), ProtocolError> {
        Ok((Arguments::from_values(format, &self)?, Vec::new()))
    }
}

impl<T: Serialize> IntoArguments for &[T] {
    fn into_parts(self, format: PayloadFormat) -> Result<(Arguments, Vec<Upload>), ProtocolError> {
        Ok((Arguments::from_values(format, self)?, Vec::new()))
    }
}

#[cfg(test)]
mod tests {
    use signalr_protocol::PayloadFormat;

    use super::IntoArguments;
    use crate::Upload;

    fn json(args: impl IntoArguments) -> (String, usize) {
        let (arguments, uploads) = args.into_parts(PayloadFormat::Json).unwrap();
        (
            String::from_utf8(arguments.as_bytes().to_vec()).unwrap(),
            uploads.len(),
        )
    }

    #[test]
    fn tuples_arrays_and_vecs_make_lists_and_uploads_leave_them() {
        assert_eq!(json(()), ("[]".into(), 0));
        assert_eq!(json((1,)), ("[1]".into(), 0));
        assert_eq!(json(("a", 2, true)), (r#"["a",2,true]"#.into(), 0));
        assert_eq!(json([1, 2, 3]), ("[1,2,3]".into(), 0));
        assert_eq!(json(vec!["x"]), (r#"["x"]"#.into(), 0));
        assert_eq!(json(&[1.5][..]), ("[1.5]".into(), 0));
        let upload = || Upload::new(futures_util::stream::iter([1]));
        assert_eq!(json((upload(),)), ("[]".into(), 1));
        assert_eq!(json((1, upload(), "b", upload())), (r#"[1,"b"]"#.into(), 2));
    }

    #[test]
    fn messagepack_lists_count_only_the_values() {
        let (arguments, uploads) = (7, Upload::new(futures_util::stream::iter([1])))
            .into_parts(PayloadFormat::MessagePack)
            .unwrap();
        // fixarray of one element, then 7.
        assert_eq!(arguments.as_bytes(), [0x91, 0x07]);
        assert_eq!(uploads.len(), 1);
    }
}
